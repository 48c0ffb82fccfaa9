`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// Ethernet II receive layer, with one optional 802.1Q tag.
//
// Registered output (one cycle): beats leave as they came, and the layer adds the frame
// offset of its payload (m_axis_start: 14, or 18 behind a tag), the drop reason (tuser)
// and the PTP time latched at the frame's first beat. Offsets instead of realignment: every later layer
// reads its header at a frame offset and only the ITCH framer, which must handle messages at
// any byte lane anyway, picks bytes out of beats.
module eth_rx (
    input  wire        clk,
    input  wire        rst,
    input  wire [95:0] ptp_ts,          // free-running PTP time of day (96-bit ToD format)

    input  wire [63:0] s_axis_tdata,
    input  wire [7:0]  s_axis_tkeep,
    input  wire        s_axis_tvalid,
    output wire        s_axis_tready,
    input  wire        s_axis_tlast,

    output reg  [63:0] m_axis_tdata,
    output reg  [7:0]  m_axis_tkeep,
    output reg         m_axis_tvalid,
    input  wire        m_axis_tready,
    output reg         m_axis_tlast,
    output reg  [2:0]  m_axis_tuser,    // drop reason
    output reg  [95:0] m_axis_ts,       // PTP time at the frame's first beat
    output reg  [15:0] m_axis_start,    // frame offset of the Ethernet payload ...
    output reg  [2:0]  m_axis_rel,      // ... subtracted from this beat's lane 0 offset, mod 8
    output reg  [3:0]  m_axis_rel_ge,   // bit g: word g of this beat is at or past that offset
    // for the IPv4 layer, from the beat count alone (its header starts at m_axis_start):
    output reg  [19:0] m_axis_hit,      // bit g: its header byte g lies in this beat
    output reg  [3:0]  m_axis_hin0      // bit g: word g of the next beat lies in its first 20 bytes
);
    reg  [12:0] beat;
    reg  [4:0]  at_r;                   // one-hot: beat 0 .. 4 (none from 5 on)
    reg         vlan_r;
    reg  [2:0]  rsn_r;
    reg  [95:0] ts_r;

    wire [15:0] type_a = {s_axis_tdata[39:32], s_axis_tdata[47:40]};   // bytes 12-13 (beat 1)
    wire [15:0] type_b = {s_axis_tdata[7:0],   s_axis_tdata[15:8]};    // bytes 16-17 (beat 2)
    wire        is_vlan = at_r[1] && type_a == 16'h8100;
    wire        vlan    = at_r[1] ? is_vlan : vlan_r;

    reg [2:0] rsn;
    always @* begin
        rsn = rsn_r;
        if (at_r[1] && !is_vlan && type_a != 16'h0800) rsn = `RSN_ETH;
        if (at_r[2] && vlan_r && type_b != 16'h0800) rsn = `RSN_ETH;
    end

    // where the IPv4 header (at 14, or 18 behind a tag) lies in this beat and the next, as
    // tables on the one-hot beat: its bytes and its first 20 bytes' words
    reg  [19:0] hit;
    reg  [3:0]  hin0;
    integer b, g, at;
    always @* begin
        hit = 20'd0;
        hin0 = 4'd0;
        for (b = 0; b < 5; b = b + 1) begin
            for (g = 0; g < 20; g = g + 1) begin
                at = (vlan ? 18 : 14) + g;
                if (at_r[b] && at / 8 == b) hit[g] = 1'b1;
            end
            for (g = 0; g < 4; g = g + 1) begin
                at = 8 * (b + 1) + 2 * g - (vlan ? 18 : 14);
                if (at_r[b] && at >= 0 && at < 20) hin0[g] = 1'b1;
            end
        end
    end

    // lock-step: every stage moves when the output may (no valid in the ready path, so the
    // ready is one net from m_axis_tready to every stage's enables, not a chain of gates)
    assign s_axis_tready = m_axis_tready;
    wire accept = s_axis_tvalid && s_axis_tready;
    // word g is past the payload's start where 8 * beat[4:0] >= 14 - 2g (18 - 2g behind a
    // tag), as tests on beat
    wire        b_ge1 = beat[4:0] != 5'd0;
    wire        b_ge2 = beat[4:1] != 4'd0;
    wire        b_ge3 = beat[4:2] != 3'd0 || &beat[1:0];

    always @(posedge clk) begin
        if (rst) begin
            m_axis_tvalid <= 1'b0;
            beat <= 13'd0;
            at_r <= 5'd1;
            vlan_r <= 1'b0;
            rsn_r <= `RSN_OK;
            ts_r <= 96'd0;
        end else begin
            if (s_axis_tready) m_axis_tvalid <= s_axis_tvalid;
            if (accept) begin
                m_axis_tdata <= s_axis_tdata;
                m_axis_tkeep <= s_axis_tkeep;
                m_axis_tlast <= s_axis_tlast;
                m_axis_tuser <= rsn;
                m_axis_ts    <= at_r[0] ? ptp_ts : ts_r;
                m_axis_start <= vlan ? 16'd18 : 16'd14;
                m_axis_rel   <= vlan ? 3'd6 : 3'd2;          // -18, -14 mod 8
                m_axis_rel_ge <= {vlan ? b_ge2 : b_ge1, b_ge2, b_ge2, vlan ? b_ge3 : b_ge2};
                m_axis_hit   <= hit;
                m_axis_hin0  <= hin0;
                if (at_r[0]) ts_r <= ptp_ts;
                if (at_r[1]) vlan_r <= is_vlan;
                at_r <= {at_r[3:0], 1'b0};
                rsn_r <= rsn;
                if (beat != 13'h1FFF) beat <= beat + 13'd1;
                if (s_axis_tlast) begin
                    beat <= 13'd0;
                    at_r <= 5'd1;
                    vlan_r <= 1'b0;
                    rsn_r <= `RSN_OK;
                end
            end
        end
    end
endmodule
`default_nettype wire
