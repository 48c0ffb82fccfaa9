`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// ITCH 5.0 over MoldUDP64/UDP/IPv4/Ethernet feed parser: frames in as 64-bit AXI-Stream
// (one beat per cycle, as from a 10G MAC at 156.25 MHz), one 128-byte normalized record
// per ITCH message out (layout in itch_decode.v).
//
//   eth_rx (reg) -> ipv4_rx (wire) -> udp_rx (wire) -> mold_rx (reg) -> itch_framer (reg)
//   -> itch_decode (reg): a record is valid 4 cycles after the beat that completes its
//   message is accepted, and every stage takes a beat per cycle.
//
// Every frame is counted once on pkt_counts: slot 0 the frames delivered whole, slot r the
// frames dropped for reason r (feed_defs.vh). Records of messages completed before a late
// fault (a block running past the payload, a frame cut short) have already left: cut-through,
// as on the wire; the fault is counted and the MoldUDP64 sequence numbers show the loss.
module feed_parser #(
    parameter GROUPS = 4
) (
    input  wire          clk,
    input  wire          rst,
    input  wire [95:0]   ptp_ts,            // free-running PTP ToD: seconds[95:48], ns[47:16], fns[15:0]

    input  wire [15:0]   cfg_port,
    input  wire [32*GROUPS-1:0] cfg_group,
    input  wire [GROUPS-1:0]    cfg_group_en,

    input  wire [63:0]   s_axis_tdata,
    input  wire [7:0]    s_axis_tkeep,
    input  wire          s_axis_tvalid,
    output wire          s_axis_tready,
    input  wire          s_axis_tlast,

    output wire [1023:0] m_axis_tdata,
    output wire          m_axis_tvalid,
    input  wire          m_axis_tready,
    output wire          m_axis_tlast,

    output reg  [8*32-1:0] pkt_counts,      // [32*r +: 32]: frames with verdict r
    output wire [31:0]   rejects_unknown_type,
    output wire [31:0]   rejects_length,
    output wire [79:0]   status_session,
    output wire [63:0]   status_next_seq,
    output wire [31:0]   status_gaps,
    output wire [31:0]   status_heartbeats,
    output wire [31:0]   status_end_of_session,
    output wire [2:0]    status_event
);
    wire [63:0] e_data, i_data, u_data, m_data;
    wire [7:0]  e_keep, i_keep, u_keep, m_keep;
    wire        e_valid, i_valid, u_valid, m_valid;
    wire        e_ready, i_ready, u_ready, m_ready;
    wire        e_last, i_last, u_last, m_last;
    wire [2:0]  e_user, i_user, u_user, m_user;
    wire [95:0] e_ts, i_ts, u_ts, m_ts;
    wire [15:0] e_start, i_start, u_start, i_len, u_len;
    wire [31:0] i_dst;
    wire [2:0]  e_rel;
    wire signed [8:0] i_rel1, u_rel1;
    wire [3:0]  e_rel_ge, e_hin0;
    wire [19:0] e_hit;
    wire [63:0] m_seq;
    wire [2:0]  m_lo;
    wire        m_any, m_any06, m_ok;
    wire [`BL_W-1:0] m_lanes;
    wire [15:0] m_count;

    eth_rx eth (
        .clk(clk), .rst(rst), .ptp_ts(ptp_ts),
        .s_axis_tdata(s_axis_tdata), .s_axis_tkeep(s_axis_tkeep), .s_axis_tvalid(s_axis_tvalid),
        .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast),
        .m_axis_tdata(e_data), .m_axis_tkeep(e_keep), .m_axis_tvalid(e_valid), .m_axis_tready(e_ready),
        .m_axis_tlast(e_last), .m_axis_tuser(e_user), .m_axis_ts(e_ts), .m_axis_start(e_start),
        .m_axis_rel(e_rel), .m_axis_rel_ge(e_rel_ge), .m_axis_hit(e_hit), .m_axis_hin0(e_hin0));

    ipv4_rx ip (
        .clk(clk), .rst(rst),
        .s_axis_tdata(e_data), .s_axis_tkeep(e_keep), .s_axis_tvalid(e_valid), .s_axis_tready(e_ready),
        .s_axis_tlast(e_last), .s_axis_tuser(e_user), .s_axis_ts(e_ts), .s_axis_start(e_start),
        .s_axis_rel(e_rel), .s_axis_rel_ge(e_rel_ge), .s_axis_hit(e_hit), .s_axis_hin0(e_hin0),
        .m_axis_tdata(i_data), .m_axis_tkeep(i_keep), .m_axis_tvalid(i_valid), .m_axis_tready(i_ready),
        .m_axis_tlast(i_last), .m_axis_tuser(i_user), .m_axis_ts(i_ts), .m_axis_start(i_start), .m_axis_rel1(i_rel1),
        .m_axis_len(i_len), .m_axis_dst(i_dst));

    udp_rx #(.GROUPS(GROUPS)) udp (
        .clk(clk), .rst(rst), .cfg_port(cfg_port), .cfg_group(cfg_group), .cfg_group_en(cfg_group_en),
        .s_axis_tdata(i_data), .s_axis_tkeep(i_keep), .s_axis_tvalid(i_valid), .s_axis_tready(i_ready),
        .s_axis_tlast(i_last), .s_axis_tuser(i_user), .s_axis_ts(i_ts), .s_axis_start(i_start), .s_axis_rel1(i_rel1),
        .s_axis_len(i_len), .s_axis_dst(i_dst),
        .m_axis_tdata(u_data), .m_axis_tkeep(u_keep), .m_axis_tvalid(u_valid), .m_axis_tready(u_ready),
        .m_axis_tlast(u_last), .m_axis_tuser(u_user), .m_axis_ts(u_ts), .m_axis_start(u_start), .m_axis_rel1(u_rel1),
        .m_axis_len(u_len));

    mold_rx mold (
        .clk(clk), .rst(rst),
        .s_axis_tdata(u_data), .s_axis_tkeep(u_keep), .s_axis_tvalid(u_valid), .s_axis_tready(u_ready),
        .s_axis_tlast(u_last), .s_axis_tuser(u_user), .s_axis_ts(u_ts), .s_axis_start(u_start), .s_axis_rel1(u_rel1),
        .s_axis_len(u_len),
        .m_axis_tdata(m_data), .m_axis_tkeep(m_keep), .m_axis_tvalid(m_valid), .m_axis_tready(m_ready),
        .m_axis_tlast(m_last), .m_axis_tuser(m_user), .m_axis_ts(m_ts), .m_axis_seq(m_seq),
        .m_axis_lo(m_lo), .m_axis_any(m_any), .m_axis_any06(m_any06), .m_axis_ok(m_ok), .m_axis_lanes(m_lanes),
        .m_axis_count(m_count),
        .status_session(status_session), .status_next_seq(status_next_seq), .status_gaps(status_gaps),
        .status_heartbeats(status_heartbeats), .status_end_of_session(status_end_of_session),
        .status_event(status_event));

    wire         r_valid, r_ready;
    wire [399:0] r_msg;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [15:0]  r_len;                 // the decoder needs its low six bits (r_fit says the rest)
    wire [23:0]  r_digits;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [63:0]  r_seq;
    wire [95:0]  r_ts;
    wire [22:0]  r_kind, r_fit;
    wire         pkt_done;
    wire [2:0]   pkt_reason;

    itch_framer framer (
        .clk(clk), .rst(rst),
        .s_axis_tdata(m_data), .s_axis_tkeep(m_keep), .s_axis_lo(m_lo), .s_axis_any(m_any), .s_axis_any06(m_any06), .s_axis_ok(m_ok),
        .s_axis_lanes(m_lanes),
        .s_axis_tvalid(m_valid), .s_axis_tready(m_ready),
        .s_axis_tlast(m_last), .s_axis_tuser(m_user), .s_axis_ts(m_ts), .s_axis_seq(m_seq),
        .s_axis_count(m_count),
        .m_rec_valid(r_valid), .m_rec_ready(r_ready), .m_rec_msg(r_msg), .m_rec_len(r_len), .m_rec_digits(r_digits),
        .m_rec_seq(r_seq), .m_rec_ts(r_ts), .m_rec_kind(r_kind), .m_rec_fit(r_fit),
 .pkt_done(pkt_done), .pkt_reason(pkt_reason));

    itch_decode decode (
        .clk(clk), .rst(rst),
        .s_rec_valid(r_valid), .s_rec_ready(r_ready), .s_rec_msg(r_msg),
        .s_rec_seq(r_seq), .s_rec_ts(r_ts), .s_rec_kind(r_kind), .s_rec_fit(r_fit),
        .s_rec_len(r_len[5:0]), .s_rec_digits(r_digits),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast),
        .rejects_unknown_type(rejects_unknown_type), .rejects_length(rejects_length));

    // one counter per reason, each with its own incrementer (no shared adder behind a mux)
    genvar r;
    generate
        for (r = 0; r < 8; r = r + 1) begin : counters
            always @(posedge clk)
                if (rst) pkt_counts[32*r +: 32] <= 32'd0;
                else if (pkt_done && pkt_reason == r) pkt_counts[32*r +: 32] <= pkt_counts[32*r +: 32] + 32'd1;
        end
    endgenerate
endmodule
`default_nettype wire
