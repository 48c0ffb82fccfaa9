`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// Bench harness: itch_framer with the payload's first lane and the per-lane block-length
// facts (block_lanes) worked out from the beat here, as mold_rx works them out a stage
// ahead in the parser, and the record's bytes past its length zeroed here, as itch_decode
// zeroes them.
module itch_framer_harness (
    input  wire         clk,
    input  wire         rst,
    input  wire [63:0]  s_axis_tdata,
    input  wire [7:0]   s_axis_tkeep,
    input  wire         s_axis_tvalid,
    output wire         s_axis_tready,
    input  wire         s_axis_tlast,
    input  wire [2:0]   s_axis_tuser,
    input  wire [95:0]  s_axis_ts,
    input  wire [63:0]  s_axis_seq,
    input  wire [15:0]  s_axis_count,
    output wire         m_rec_valid,
    input  wire         m_rec_ready,
    output wire [399:0] m_rec_msg,
    output wire [15:0]  m_rec_len,
    output wire [63:0]  m_rec_seq,
    output wire [95:0]  m_rec_ts,
    output wire         pkt_done,
    output wire [2:0]   pkt_reason
);
    wire [399:0] msg;
    genvar k;
    generate
        for (k = 0; k < 50; k = k + 1) begin : pad
            assign m_rec_msg[8*k +: 8] = m_rec_len > k ? msg[8*k +: 8] : 8'd0;
        end
    endgenerate

    `include "itch_blocks.vh"
    reg [2:0] lo;
    integer i;
    always @* begin
        lo = 3'd0;
        for (i = 7; i >= 0; i = i - 1) if (s_axis_tkeep[i]) lo = i[2:0];
    end

    itch_framer framer (
        .clk(clk), .rst(rst),
        .s_axis_tdata(s_axis_tdata), .s_axis_tkeep(s_axis_tkeep), .s_axis_lo(lo), .s_axis_any(s_axis_tkeep != 8'd0), .s_axis_any06(s_axis_tkeep[6:0] != 7'd0), .s_axis_ok(s_axis_tuser == 3'd0),
        .s_axis_lanes(block_lanes(s_axis_tdata)),
        .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast),
        .s_axis_tuser(s_axis_tuser), .s_axis_ts(s_axis_ts), .s_axis_seq(s_axis_seq),
        .s_axis_count(s_axis_count),
        .m_rec_valid(m_rec_valid), .m_rec_ready(m_rec_ready), .m_rec_msg(msg),
        .m_rec_len(m_rec_len), .m_rec_seq(m_rec_seq), .m_rec_ts(m_rec_ts),
        .pkt_done(pkt_done), .pkt_reason(pkt_reason));
endmodule
`default_nettype wire
