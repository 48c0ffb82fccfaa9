`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// UDP receive layer: destination port and multicast-group filters set by registers, UDP
// length checked against the IPv4 packet. The data path is a wire; the verdict is taken on
// the beat after the 8-byte header, from registers, and rides on the stream from the beat
// after that (the 20-byte MoldUDP64 header follows, so no message can be out before it). The UDP checksum is not checked (optional in IPv4,
// and feeds send it as zero).
//
// s_axis_start is used a beat late (registered here, for timing): it is known from the
// IPv4 header's first byte, at least two beats before the UDP header begins.
module udp_rx #(
    parameter GROUPS = 4
) (
    input  wire        clk,
    input  wire        rst,
    input  wire [15:0] cfg_port,                 // accepted destination port
    input  wire [32*GROUPS-1:0] cfg_group,       // accepted IPv4 destination addresses ...
    input  wire [GROUPS-1:0]    cfg_group_en,    // ... those enabled; none enabled: any

    input  wire [63:0] s_axis_tdata,
    input  wire [7:0]  s_axis_tkeep,
    input  wire        s_axis_tvalid,
    output wire        s_axis_tready,
    input  wire        s_axis_tlast,
    input  wire [2:0]  s_axis_tuser,
    input  wire [95:0] s_axis_ts,
    input  wire [15:0] s_axis_start,             // frame offset of the UDP header; 16'hFFFF until known ...
    input  wire signed [8:0] s_axis_rel1,        // ... subtracted from the next beat's lane 0 offset
    input  wire [15:0] s_axis_len,               // IPv4 payload length
    input  wire [31:0] s_axis_dst,

    output wire [63:0] m_axis_tdata,
    output wire [7:0]  m_axis_tkeep,
    output wire        m_axis_tvalid,
    input  wire        m_axis_tready,
    output wire        m_axis_tlast,
    output wire [2:0]  m_axis_tuser,
    output wire [95:0] m_axis_ts,
    output wire [15:0] m_axis_start,             // frame offset of the UDP payload; 16'hFFFF until known ...
    output reg  signed [8:0] m_axis_rel1,        // ... subtracted from the next beat's lane 0 offset
    output wire [15:0] m_axis_len                // UDP length (header included)
);
    reg  [3:0]  beat;                   // held at 15
    reg  [7:0]  hdr [0:7];
    reg         done_r;
    reg         judged_r;
    reg  [2:0]  rsn_r;
    reg  [15:0] pay_r;                  // s_axis_start + 8, a beat late

    reg         known;                  // pay_r is meaningful
    reg  [2:0]  rel_r;                  // this beat's lane 0 minus the header's start, mod 8, worked out a beat ahead
    wire [2:0]  rel = rel_r;
    // which header bytes the next beat holds, decided a beat ahead (from rel_next)
    wire signed [8:0] rel_next = s_axis_rel1;
    wire        near_next = beat != 4'd15;  // headers lie in the first 128 bytes
    // v in (c - 8, c] as bit tests on v's octet and lane (no comparator's carry chain)
    function in8(input [8:0] v, input [8:0] c);
        in8 = v[8:3] == c[8:3] && v[2:0] <= c[2:0] || v[8:3] == c[8:3] - 6'd1 && v[2:0] > c[2:0];
    endfunction

    reg  [7:0] hit_r;                 // byte g of the header lies in this beat
    reg         last_hit_r;             // the header's last byte lies in this beat
    wire        end_here = known && !done_r && last_hit_r;
    wire        accept = s_axis_tvalid && s_axis_tready;

    wire [15:0] udplen = {hdr[4], hdr[5]};
    reg         port_hi_ok, port_lo_ok;             // the destination port's bytes match
    reg         len_hi_gt, len_hi_eq, len_hi_z;     // the UDP length's high byte against the
    reg         len_lo_gt, len_lo_lt8;              //   IPv4 payload length's, zero; its low byte

    // the filter settings, registered here (they change rarely; the comparisons start at
    // flip-flops beside them, not at the ports)
    reg  [15:0] port_r;
    reg  [32*GROUPS-1:0] group_r;
    reg  [GROUPS-1:0]    group_en_r;
    always @(posedge clk) begin
        port_r <= cfg_port;
        group_r <= cfg_group;
        group_en_r <= cfg_group_en;
    end

    genvar g, l;
    generate
        for (g = 0; g < 8; g = g + 1) begin : capture
            localparam signed [8:0] G = g;
            wire [2:0] d = G[2:0] - rel[2:0];      // its lane, when hit_r[g]
            wire [7:0] b = s_axis_tdata[d*8 +: 8];
            wire caught = accept && known && hit_r[g];
            always @(posedge clk)
                if (rst) hdr[g] <= 8'd0;        // a defined length before the first header
                else if (caught) hdr[g] <= b;
            // the verdict's comparisons, byte by byte as the bytes are caught (the port and
            // the IPv4 payload length are known by then), so the verdict reads flags
            if (g == 2) begin : port_hi
                always @(posedge clk) if (caught) port_hi_ok <= b == port_r[15:8];
            end
            if (g == 3) begin : port_lo
                always @(posedge clk) if (caught) port_lo_ok <= b == port_r[7:0];
            end
            // (the length's comparisons on every lane, then picked: the lane pick stays off
            // the comparators' carry chains)
            if (g == 4) begin : len_hi
                wire [7:0] gt;
                for (l = 0; l < 8; l = l + 1) begin : lanes
                    assign gt[l] = s_axis_tdata[8*l +: 8] > s_axis_len[15:8];
                end
                always @(posedge clk)
                    if (caught) begin
                        len_hi_gt <= gt[d];
                        len_hi_eq <= b == s_axis_len[15:8];
                        len_hi_z <= b == 8'd0;
                    end
            end
            if (g == 5) begin : len_lo
                wire [7:0] gt;
                for (l = 0; l < 8; l = l + 1) begin : lanes
                    assign gt[l] = s_axis_tdata[8*l +: 8] > s_axis_len[7:0];
                end
                always @(posedge clk)
                    if (caught) begin
                        len_lo_gt <= gt[d];
                        len_lo_lt8 <= b < 8'd8;
                    end
            end
            always @(posedge clk)
                if (accept) hit_r[g] <= near_next && in8(rel_next, G);
        end
    endgenerate

    // each group's match registered on its own (the IPv4 destination is in at least a beat
    // before the UDP header's last byte, so the matches are ready for the verdict)
    reg  [GROUPS-1:0] match_r;
    integer i;
    always @(posedge clk)
        if (accept)
            for (i = 0; i < GROUPS; i = i + 1)
                match_r[i] <= group_r[32*i +: 32] == s_axis_dst;
    wire group_ok = group_en_r == {GROUPS{1'b0}} || (group_en_r & match_r) != {GROUPS{1'b0}};

    // the verdict, taken the beat after the header and registered
    wire [2:0] verdict = len_hi_z && len_lo_lt8 ? `RSN_IPHDR :                 // udplen < 8
                         len_hi_gt || len_hi_eq && len_lo_gt ? `RSN_TRUNC :     // udplen > s_axis_len
                         !port_hi_ok || !port_lo_ok || !group_ok ? `RSN_FILTER : `RSN_OK;
    wire [2:0] own = rsn_r == `RSN_OK && s_axis_tlast && !done_r && !end_here ? `RSN_TRUNC : rsn_r;

    assign m_axis_tdata  = s_axis_tdata;
    assign m_axis_tkeep  = s_axis_tkeep;
    assign m_axis_tvalid = s_axis_tvalid;
    assign m_axis_tlast  = s_axis_tlast;
    assign s_axis_tready = m_axis_tready;
    assign m_axis_tuser  = s_axis_tuser != `RSN_OK ? s_axis_tuser : own;
    assign m_axis_ts     = s_axis_ts;
    assign m_axis_start  = known ? pay_r : 16'hFFFF;
    assign m_axis_len    = udplen;

    always @(posedge clk) begin
        if (rst) begin
            beat <= 4'd0;
            done_r <= 1'b0;
            judged_r <= 1'b0;
            rsn_r <= `RSN_OK;
            known <= 1'b0;
        end else if (accept) begin
            known <= !s_axis_tlast && s_axis_start != 16'hFFFF;
            pay_r <= s_axis_start + 16'd8;
            m_axis_rel1 <= s_axis_rel1;         // a beat later, 8 bytes further: the same number
            rel_r <= rel_next[2:0];
            last_hit_r <= near_next && in8(rel_next, 9'd7);
            if (end_here) done_r <= 1'b1;
            if (done_r) judged_r <= 1'b1;
            rsn_r <= own;
            if (done_r && !judged_r && own == `RSN_OK) rsn_r <= verdict;
            if (beat != 4'd15) beat <= beat + 4'd1;
            if (s_axis_tlast) begin
                beat <= 4'd0;
                done_r <= 1'b0;
                judged_r <= 1'b0;
                rsn_r <= `RSN_OK;
            end
        end
    end
endmodule
`default_nettype wire
