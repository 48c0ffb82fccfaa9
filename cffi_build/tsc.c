/* TSC reading, TSC frequency discovery and reference-clock sampling for netio.clock. */
#include <errno.h>
#include <linux/perf_event.h>
#include <linux/ptp_clock.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cpuid.h>

#include "tsc_clock.h"

static uint64_t tsc_now(void) { return netio_rdtsc(); }

static uint64_t tscp_now(uint32_t *aux)
{
    uint32_t lo, hi, c;
    __asm__ __volatile__("rdtscp" : "=a"(lo), "=d"(hi), "=c"(c));
    *aux = c;
    return ((uint64_t)hi << 32) | lo;
}

static int cpuid_leaf(uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    if (leaf > __get_cpuid_max(leaf & 0xf0000000u, 0))
        return -1;
    __cpuid_count(leaf, sub, out[0], out[1], out[2], out[3]);
    return 0;
}

/* The kernel's own TSC -> ns conversion from a perf event's mmap page; -errno on failure. */
static int perf_tsc_conversion(uint32_t *mult, uint32_t *shift, uint64_t *zero)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_DUMMY;
    attr.exclude_kernel = 1;
    int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    if (fd < 0)
        return -errno;
    long page_size = sysconf(_SC_PAGESIZE);
    struct perf_event_mmap_page *pg = mmap(NULL, page_size, PROT_READ, MAP_SHARED, fd, 0);
    int err = 0;
    if (pg == MAP_FAILED) {
        err = -errno;
    } else {
        if (!pg->cap_user_time || !pg->cap_user_time_zero) {
            err = -ENOTSUP;
        } else {
            uint32_t seq;
            do {
                seq = pg->lock;
                __sync_synchronize();
                *mult = pg->time_mult;
                *shift = pg->time_shift;
                *zero = pg->time_zero;
                __sync_synchronize();
            } while (pg->lock != seq || (seq & 1));
        }
        munmap(pg, page_size);
    }
    close(fd);
    return err;
}

static int64_t timespec_ns(const struct timespec *ts) { return ts->tv_sec * 1000000000LL + ts->tv_nsec; }
static int64_t ptp_ns(const struct ptp_clock_time *t) { return t->sec * 1000000000LL + t->nsec; }

/* n readings of clock `id` each bracketed by TSC reads: out rows are (tsc_before, ref_ns, tsc_after). */
static int sample_clock(int id, int n, int64_t *out)
{
    struct timespec ts;
    for (int i = 0; i < n; i++) {
        uint64_t before = tsc_now();
        if (clock_gettime(id, &ts) != 0)
            return -errno;
        uint64_t after = tsc_now();
        out[3 * i] = (int64_t)before;
        out[3 * i + 1] = timespec_ns(&ts);
        out[3 * i + 2] = (int64_t)after;
    }
    return n;
}

/* PTP_SYS_OFFSET_EXTENDED: rows are (sys_before_ns, phc_ns, sys_after_ns) in the system clock. */
static int ptp_offset_extended(int fd, int n, int64_t *out)
{
    struct ptp_sys_offset_extended req;
    memset(&req, 0, sizeof req);
    req.n_samples = (unsigned)(n > PTP_MAX_SAMPLES ? PTP_MAX_SAMPLES : n);
    if (ioctl(fd, PTP_SYS_OFFSET_EXTENDED, &req) != 0)
        return -errno;
    for (unsigned i = 0; i < req.n_samples; i++)
        for (int k = 0; k < 3; k++)
            out[3 * i + k] = ptp_ns(&req.ts[i][k]);
    return (int)req.n_samples;
}

/* PTP_SYS_OFFSET_PRECISE (hardware cross-timestamp): (phc_ns, realtime_ns, monoraw_ns). */
static int ptp_offset_precise(int fd, int64_t *out)
{
    struct ptp_sys_offset_precise req;
    memset(&req, 0, sizeof req);
    if (ioctl(fd, PTP_SYS_OFFSET_PRECISE, &req) != 0)
        return -errno;
    out[0] = ptp_ns(&req.device);
    out[1] = ptp_ns(&req.sys_realtime);
    out[2] = ptp_ns(&req.sys_monoraw);
    return 0;
}

static void tsc_to_ns_batch(const struct netio_clock *c, const uint64_t *tsc, int64_t *ns, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ns[i] = netio_tsc_to_ns(c, tsc[i]);
}

/* Cost of one conversion: `iters` dependent conversions, returns TSC cycles spent. */
static uint64_t convert_cost(const struct netio_clock *c, uint64_t iters, int64_t *sink)
{
    uint64_t start = tsc_now(), x = start;
    int64_t acc = 0;
    for (uint64_t i = 0; i < iters; i++) {
        acc += netio_tsc_to_ns(c, x);
        x += (uint64_t)(acc & 7) + 1;   /* a dependency the compiler cannot hoist */
    }
    *sink = acc;
    return tsc_now() - start;
}
