"""cocotb bench for itch_framer alone (in itch_framer_harness.v): MoldUDP64 message-block payloads starting at every
byte lane (AXI null bytes before and after them), through cocotbext-axi's AxiStreamSource
with random tvalid gaps, random back-pressure on the record output; the raw records and
the per-packet verdicts are written back for tests/test_fpga_framer.py to compare.
"""
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSource


@cocotb.test()
async def run_payloads(dut):
    job = np.load(os.environ["NETIO_FPGA_IN"])
    rng = random.Random(int(job["seed"]))
    busy = float(job["valid_prob"])
    ready = float(job["ready_prob"])
    seqs, counts = job["seq"].tolist(), job["count"].tolist()
    cocotb.start_soon(Clock(dut.clk, 6400, unit="ps").start())
    dut.rst.value = 1
    dut.m_rec_ready.value = 1
    dut.s_axis_tuser.value = 0
    dut.s_axis_ts.value = 0
    dut.s_axis_seq.value = seqs[0]
    dut.s_axis_count.value = counts[0]
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    if busy < 1:
        source.set_pause_generator(iter(lambda: rng.random() >= busy, None))
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    records, verdicts = [], []

    async def watch():
        packet = 0
        while True:
            await RisingEdge(dut.clk)
            if dut.m_rec_valid.value and dut.m_rec_ready.value:
                records.append(int(dut.m_rec_msg.value).to_bytes(50, "little") +
                               int(dut.m_rec_len.value).to_bytes(2, "little") +
                               int(dut.m_rec_seq.value).to_bytes(8, "little"))
            if dut.pkt_done.value:
                verdicts.append(int(dut.pkt_reason.value))
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value and dut.s_axis_tlast.value:
                packet += 1              # the next packet's side-band, before its first beat
                if packet < len(seqs):
                    dut.s_axis_seq.value = seqs[packet]
                    dut.s_axis_count.value = counts[packet]
            dut.m_rec_ready.value = int(rng.random() < ready)

    cocotb.start_soon(watch())
    data, offset = job["data"].tobytes(), 0
    for n, lead, trail in zip(job["lengths"].tolist(), job["lead"].tolist(), job["trail"].tolist()):
        payload = data[offset:offset + n]
        offset += n
        await source.send(AxiStreamFrame(bytes(lead) + payload + bytes(trail),
                                          tkeep=[0] * lead + [1] * n + [0] * trail))
    await source.wait()
    while len(verdicts) < len(seqs) or dut.m_rec_valid.value:
        await RisingEdge(dut.clk)
    for _ in range(8):
        await RisingEdge(dut.clk)
    np.savez(os.environ["NETIO_FPGA_OUT"],
             records=np.frombuffer(b"".join(records), np.uint8),
             verdicts=np.array(verdicts, np.int64))
