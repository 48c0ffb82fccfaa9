"""cocotb bench for feed_parser, the whole parser: frames in through cocotbext-axi's
AxiStreamSource (optionally with random tvalid gaps), records out through AxiStreamSink
(optionally back-pressured), every input beat and every record's first valid stamped with
its cycle, the PTP time driven from simulated time.

The job comes from ``netio.fpga_sim.simulate`` (arrays in $NETIO_FPGA_IN) and the results
go back the same way ($NETIO_FPGA_OUT); tests/test_fpga_parser.py compares them bit for bit
with the software reference. The bench itself checks the AXI-Stream rules it can see.
"""
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

CLOCK_PS = 6400                          # 156.25 MHz
FRAC = 1 << 16                           # the ToD's fractional-ns unit


def tod(frac_ns: int) -> int:
    """96-bit PTP time of day (seconds 48 | ns 32 | fractional ns 16) from 2^-16 ns units."""
    total_ns, frac = divmod(frac_ns, FRAC)
    sec, ns = divmod(total_ns, 1_000_000_000)
    return (sec << 48) | (ns << 16) | frac


def pauses(rng: random.Random, busy: float):
    """Pause-generator: True (pause this cycle) with probability 1 - busy."""
    while True:
        yield rng.random() >= busy


class Monitor:
    """Per-cycle log of beats accepted, records offered, status events; drives the PTP time."""

    def __init__(self, dut, ptp_start_ns: int):
        self.dut = dut
        self.cycle = 0
        self.t = ptp_start_ns * FRAC
        self.beat_cycle, self.beat_frame, self.frame_ptp_ns = [], [], []
        self.record_cycle, self.events = [], []
        self.last_output = 0

    async def run(self):
        dut = self.dut
        frame, first, offered = 0, True, False
        step = CLOCK_PS * FRAC // 1000
        while True:
            dut.ptp_ts.value = tod(self.t)
            await RisingEdge(dut.clk)
            self.cycle += 1
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                if first:
                    v = int(dut.ptp_ts.value)
                    self.frame_ptp_ns.append((v >> 48) * 1_000_000_000 + (v >> 16 & 0xFFFFFFFF))
                self.beat_cycle.append(self.cycle)
                self.beat_frame.append(frame)
                first = bool(dut.s_axis_tlast.value)
                frame += first
            valid = bool(dut.m_axis_tvalid.value)
            if valid and not offered:
                self.record_cycle.append(self.cycle)
            if valid:
                self.last_output = self.cycle
            offered = valid and not dut.m_axis_tready.value
            event = int(dut.status_event.value)
            if event:
                self.events.append((self.cycle, event))
            self.t += step


@cocotb.test()
async def run_frames(dut):
    job = np.load(os.environ["NETIO_FPGA_IN"])
    rng = random.Random(int(job["seed"]))
    cocotb.start_soon(Clock(dut.clk, CLOCK_PS, unit="ps").start())
    dut.rst.value = 1
    dut.ptp_ts.value = 0
    dut.cfg_port.value = int(job["udp_port"])
    dut.cfg_group.value = sum(int(g) << (32 * i) for i, g in enumerate(job["groups"].tolist()))
    dut.cfg_group_en.value = int(job["group_en"])
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    if job["valid_prob"] < 1:
        source.set_pause_generator(pauses(rng, float(job["valid_prob"])))
    if job["ready_prob"] < 1:
        sink.set_pause_generator(pauses(rng, float(job["ready_prob"])))
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    monitor = Monitor(dut, int(job["ptp_start_ns"]))
    cocotb.start_soon(monitor.run())
    data, offset = job["data"].tobytes(), 0
    for n in job["lengths"].tolist():
        await source.send(AxiStreamFrame(data[offset:offset + n]))
        offset += n
    await source.wait()
    while monitor.cycle - monitor.last_output < 32 or dut.m_axis_tvalid.value:
        await RisingEdge(dut.clk)

    records = []
    while not sink.empty():
        rec = sink.recv_nowait()
        assert len(rec.tdata) == 128, f"a record is one 128-byte beat, got {len(rec.tdata)} bytes"
        records.append(bytes(rec.tdata))
    assert len(records) == len(monitor.record_cycle), "every record offered was taken once"
    assert len(monitor.beat_frame) == 0 or monitor.beat_frame[-1] == len(job["lengths"]) - 1

    counts = int(dut.pkt_counts.value)
    np.savez(
        os.environ["NETIO_FPGA_OUT"],
        records=np.frombuffer(b"".join(records), np.uint8),
        record_cycle=np.array(monitor.record_cycle, np.int64),
        beat_cycle=np.array(monitor.beat_cycle, np.int64),
        beat_frame=np.array(monitor.beat_frame, np.int64),
        frame_ptp_ns=np.array(monitor.frame_ptp_ns, np.int64),
        pkt_counts=np.array([counts >> (32 * r) & 0xFFFFFFFF for r in range(8)], np.uint64),
        rejects=np.array([int(dut.rejects_unknown_type.value), int(dut.rejects_length.value)], np.uint64),
        status=np.array([int(dut.status_gaps.value), int(dut.status_heartbeats.value),
                         int(dut.status_end_of_session.value), int(dut.status_next_seq.value)], np.uint64),
        status_events=np.array(monitor.events, np.int64).reshape(-1, 2),
    )
