/* How much of a CPU's time is taken from a program that never sleeps.
 *
 * cpu_stalls() spins for a while reading the TSC; a gap between two readings is time the
 * program did not run (an interrupt, the kernel, the hypervisor taking the vCPU). Any
 * latency a busy-polling venue measures on that CPU carries these gaps: an order that
 * arrives in a gap waits for the rest of it. For each threshold T, stalled[i] gets the
 * cycles spent in gaps beyond T (sum of gap - T): divided by the run, it is the chance
 * that a random instant is delayed by more than T. count[i] gets the gaps longer than T.
 * Built as a shared library for tools/bench/venue.py.
 */
#include <stdint.h>
#include <x86intrin.h>

void cpu_stalls(uint64_t cycles, const uint64_t *threshold, uint32_t n, uint64_t *stalled, uint64_t *count,
                uint64_t *longest)
{
    uint64_t prev = __rdtsc(), end = prev + cycles;
    *longest = 0;
    for (uint32_t i = 0; i < n; i++)
        stalled[i] = count[i] = 0;
    while (prev < end) {
        uint64_t now = __rdtsc(), gap = now - prev;
        for (uint32_t i = 0; i < n; i++)
            if (gap > threshold[i]) {
                stalled[i] += gap - threshold[i];
                count[i]++;
            }
        if (gap > *longest)
            *longest = gap;
        prev = now;
    }
}

/* The same CPU seen by a walk of fixed work: n times, idle for `idle` cycles (orders at
 * light load arrive apart), then run `steps` dependent multiply-adds, which take the same
 * time whenever nothing interrupts them; took[i] gets the cycles chain i took. Their
 * tail is what the machine alone adds to a walk of that length: the floor under the
 * venue's own tail on this CPU. Returns the chains' result, so none is optimised away. */
uint64_t fixed_walks(uint64_t steps, uint64_t idle, uint32_t n, uint64_t *took)
{
    uint64_t x = 1;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t start = __rdtsc();
        while (__rdtsc() - start < idle)
            ;
        start = __rdtsc();
        for (uint64_t s = 0; s < steps; s++)
            x = x * 6364136223846793005ull + s;
        took[i] = __rdtsc() - start;
    }
    return x;
}
