"""cffi build of netio._packet: TPACKET_V3/V2 ring walking, sendmmsg/recvmmsg over bursts, pcap records."""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

ffibuilder = cffi.FFI()
ffibuilder.cdef("""
    #define PCAP_MAX_IFACES ...

    struct pkt_ring {
        uint8_t *base;
        uint32_t block_size;
        uint32_t block_nr;
        uint32_t frame_size;
        uint32_t frame_nr;
        uint64_t consumed;
        uint64_t released;
        uint32_t pkt;
        uint32_t next;
        uint64_t too_long;
    };
    uint32_t pkt_ring_rx(struct pkt_ring *r, uint32_t max, int64_t *off, uint32_t *len, int64_t *ts);
    void pkt_ring_release(struct pkt_ring *r, uint64_t upto);
    uint32_t pkt_ring2_rx(struct pkt_ring *r, uint32_t max, int64_t *off, uint32_t *len, int64_t *ts);
    void pkt_ring2_release(struct pkt_ring *r, uint64_t upto);
    uint32_t pkt_send(int fd, const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n, int *err);

    int32_t udp_recv(int fd, uint8_t *buf, uint32_t slot, uint32_t nslots, uint64_t head, uint32_t max,
                     int64_t *off, uint32_t *len, int64_t *ts, uint32_t *ip, uint16_t *port,
                     uint32_t *filled, uint64_t *truncated);
    uint32_t udp_send(int fd, const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                      const uint32_t *ip, const uint16_t *port, int *err);

    enum pcap_status { PCAP_MORE, PCAP_END, PCAP_TRUNCATED, PCAP_CORRUPT };
    struct pcap_cursor {
        int64_t pos;
        int32_t format;
        int32_t swapped;
        int32_t nsec;
        int32_t status;
        int32_t problem;
        int64_t problem_pos;
        uint32_t n_ifaces;
        uint16_t linktype[...];
        uint8_t tsresol[...];
        int64_t tsoffset[...];
    };
    const char *pcap_problem_text(unsigned p);
    uint32_t pcap_index(struct pcap_cursor *c, const uint8_t *file, int64_t size, uint32_t max,
                        int64_t *off, uint32_t *caplen, uint32_t *origlen, int64_t *ts);
    uint64_t pcap_write(int format, const uint8_t *buf, const int64_t *off, const uint32_t *len, uint32_t n,
                        const int64_t *ts, uint32_t snaplen, uint8_t *out);
""")
ffibuilder.set_source(
    "netio._packet",
    '#include "packet.c"',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-march=x86-64-v2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
