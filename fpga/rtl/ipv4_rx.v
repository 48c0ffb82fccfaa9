`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// IPv4 receive layer: header at frame offset s_axis_start, IHL options skipped, header
// checksum checked (over the options too), UDP only, no fragments, frame length checked
// against the total length. The data path is a wire.
//
// Timing: header arithmetic is 8 bits wide (every header of the stack lies in the first 128
// bytes of a frame), the checksum is summed in a pipeline behind the data, and the verdict
// is registered: it rides on the stream from the third beat after the header's last byte,
// before any message could end (the UDP and MoldUDP64 headers and the shortest block, 42
// bytes, lie in between). A frame that ends before the verdict is "truncated".
module ipv4_rx (
    input  wire        clk,
    input  wire        rst,

    input  wire [63:0] s_axis_tdata,
    input  wire [7:0]  s_axis_tkeep,
    input  wire        s_axis_tvalid,
    output wire        s_axis_tready,
    input  wire        s_axis_tlast,
    input  wire [2:0]  s_axis_tuser,
    input  wire [95:0] s_axis_ts,
    input  wire [15:0] s_axis_start,    // frame offset of the IPv4 header (even, below 128) ...
    input  wire [2:0]  s_axis_rel,      // ... subtracted from this beat's lane 0 offset, mod 8
    input  wire [3:0]  s_axis_rel_ge,   // bit g: word g of this beat is at or past the header's start
    input  wire [19:0] s_axis_hit,      // bit g: header byte g lies in this beat (from the beat count)
    input  wire [3:0]  s_axis_hin0,     // bit g: word g of the next beat lies in the header's first 20 bytes

    output wire [63:0] m_axis_tdata,
    output wire [7:0]  m_axis_tkeep,
    output wire        m_axis_tvalid,
    input  wire        m_axis_tready,
    output wire        m_axis_tlast,
    output wire [2:0]  m_axis_tuser,
    output wire [95:0] m_axis_ts,
    output wire [15:0] m_axis_start,    // frame offset of the IPv4 payload; 16'hFFFF until known ...
    output reg  signed [8:0] m_axis_rel1, // ... subtracted from the next beat's lane 0 offset (registered)
    output reg  [15:0] m_axis_len,      // IPv4 payload length (total length - header length)
    output wire [31:0] m_axis_dst       // destination address
);
    reg  [7:0]  hdr [0:19];
    reg  [16:0] p01_r, p23_r;           // this beat's header words (others zero) summed in pairs, a beat late
    reg  [20:0] acc;                    // one's-complement sum so far, carries kept, two beats late
    reg         hdr_bad_r;              // the header's fields, judged a beat after its last byte
    reg         b0_seen_r;              // header byte 0 (version, IHL) seen before this beat
    reg  [1:0]  done_r;                 // header complete 1 / 2 beats ago
    reg         judged_r;               // verdict taken
    reg  [2:0]  rsn_r;
    reg  [15:0] end_r;                  // start + total length
    reg  [15:0] off1_r, off2_r;
    reg  [15:0] pay_r;                  // start + header length, registered with b0_seen_r         // frame offsets of the next beat's and the one after's lane 0
    reg         over_r, inside_r;       // the frame is short of end_r if it ends in this beat:
    reg  [2:0]  last_lane_r;            //   always / unless lane last_lane_r is kept

    wire [2:0]  rel = s_axis_rel;

    // byte 0 (version, IHL) in this beat; the header is at least 20 bytes long, so its end,
    // and the payload's start, are always reckoned from the registered IHL
    wire        b0_here = s_axis_hit[0];
    wire [6:0]  hlen = {1'b0, hdr[0][3:0], 2'b00};
    wire        known = b0_seen_r;
    // worked out a beat ahead, from registers: the header bytes from the next beat's lane 0
    // on are -m_axis_rel1 once the IHL is in (bit tests on it: m_axis_rel1 is even); before,
    // the next beat's words in the first 20 bytes come from the Ethernet layer
    reg  [3:0]  beat;                   // held at 15
    wire        near_next = beat != 4'd15;  // the next beat lies within the first 128 bytes
    reg  [3:0]  hin_r;                  // word g of this beat is a header word
    reg         end_r2;                 // the header's last byte is in this beat
    // m_axis_rel1 < -2g, i.e. the next beat's word g lies before the payload
    wire [3:0]  rel1_lt = {m_axis_rel1[8] && (m_axis_rel1[7:3] != 5'h1F || m_axis_rel1[2:1] == 2'd0),
                           m_axis_rel1[8] && m_axis_rel1[7:2] != 6'h3F,
                           m_axis_rel1[8] && m_axis_rel1[7:1] != 7'h7F,
                           m_axis_rel1[8]};
    wire        end_here = end_r2;

    wire accept = s_axis_tvalid && s_axis_tready;

    // the header bytes and checksum words of this beat
    wire [15:0] word [0:3];
    genvar g;
    generate
        for (g = 0; g < 20; g = g + 1) begin : capture
            localparam signed [8:0] G = g;
            wire [2:0] d = G[2:0] - rel;
            always @(posedge clk)
                if (rst) hdr[g] <= 8'd0;        // a defined length before the first header
                else if (accept && s_axis_hit[g]) hdr[g] <= s_axis_tdata[d*8 +: 8];
        end
        for (g = 0; g < 4; g = g + 1) begin : words_in_beat
            // (the lower bound comes registered from the Ethernet layer: a VLAN tag is known
            // only in beat 1 itself)
            wire in_hdr = hin_r[g] && s_axis_rel_ge[g];
            assign word[g] = in_hdr ? {s_axis_tdata[16*g +: 8], s_axis_tdata[16*g + 8 +: 8]} : 16'd0;
            always @(posedge clk)
                if (rst) hin_r[g] <= 1'b0;
                else if (accept) hin_r[g] <= !s_axis_tlast && near_next && (known ? rel1_lt[g] : s_axis_hin0[g]);
        end
    endgenerate

    wire [15:0] totlen = {hdr[2], hdr[3]};
    wire [2:0]  b0_lane = 3'd0 - rel;                          // byte 0's lane, in its beat
    wire [3:0]  b0_ihl = s_axis_tdata[8*b0_lane +: 4];
    // rel1 where byte 0 is in this beat, at lane L (rel = -L): 16 - L - 4 * IHL, a table of
    // each lane's IHL nibble (no carry chain), then picked by the lane
    function signed [8:0] rel1_at(input [3:0] ihl, input [2:0] lane);
        integer v;
        begin
            rel1_at = 9'sd0;
            for (v = 0; v < 16; v = v + 1)
                if (ihl == v[3:0]) rel1_at = 9'd16 - {6'd0, lane} - {3'd0, v[3:0], 2'b00};
        end
    endfunction
    reg  signed [8:0] rel1_b0;
    integer lane;
    always @* begin
        rel1_b0 = 9'sd0;
        for (lane = 0; lane < 8; lane = lane + 1)
            if (b0_lane == lane[2:0]) rel1_b0 = rel1_at(s_axis_tdata[8*lane +: 4], lane[2:0]);
    end
    // the header checks out when its one's-complement sum is 0xFFFF; the sum is below 2^21,
    // so one fold decides it. Two beats after the header, its last beat's share is in acc:
    // the pair sums come straight from the beat, and acc takes both at once through a
    // carry-save step (three numbers to two in one LUT level), so the verdict starts at acc.
    wire [20:0] csa_s = acc ^ {4'd0, p01_r} ^ {4'd0, p23_r};
    wire [20:0] csa_c = {acc[19:0] & {3'd0, p01_r} | acc[19:0] & {3'd0, p23_r} | {3'd0, p01_r & p23_r}, 1'b0};
    // fold == 0xFFFF without the fold's adder: the low half must be 0xFFFF minus the high
    wire        sum_ok = acc[15:5] == 11'h7FF && acc[4:0] == ~acc[20:16];
    wire        hdr_bad = hdr[0][7:4] != 4'd4 || hdr[0][3:0] < 4'd5 || hdr[9] != 8'd17 ||
                          hdr[6][5] || {hdr[6][4:0], hdr[7]} != 13'd0 ||
                          totlen < {10'd0, hdr[0][3:0], 2'b00};
    wire        judge = done_r[1] && !judged_r;
    // off - end_r < 0, i.e. end_r > off: the sign bits of subtractions (a comparison's carry
    // out needs an extra cell to leave the carry chain)
    /* verilator lint_off UNUSEDSIGNAL */
    wire [16:0] off1_end = {1'b0, off1_r} - {1'b0, end_r};
    wire [16:0] off2_end = {1'b0, off2_r} - {1'b0, end_r};
    /* verilator lint_on UNUSEDSIGNAL */

    // the frame ends short of the total length, or before the verdict was taken
    wire trunc = s_axis_tlast && (!judged_r || over_r || inside_r && !s_axis_tkeep[last_lane_r]);
    wire [2:0] own = rsn_r == `RSN_OK && trunc ? `RSN_TRUNC : rsn_r;

    assign m_axis_tdata  = s_axis_tdata;
    assign m_axis_tkeep  = s_axis_tkeep;
    assign m_axis_tvalid = s_axis_tvalid;
    assign m_axis_tlast  = s_axis_tlast;
    assign s_axis_tready = m_axis_tready;
    assign m_axis_tuser  = s_axis_tuser != `RSN_OK ? s_axis_tuser : own;
    assign m_axis_ts     = s_axis_ts;
    assign m_axis_start  = known ? pay_r : 16'hFFFF;
    assign m_axis_dst    = {hdr[16], hdr[17], hdr[18], hdr[19]};

    always @(posedge clk) begin
        if (rst) begin
            beat <= 4'd0;
            p01_r <= 17'd0;
            p23_r <= 17'd0;
            acc <= 21'd0;
            b0_seen_r <= 1'b0;
            end_r2 <= 1'b0;
            done_r <= 2'd0;
            judged_r <= 1'b0;
            rsn_r <= `RSN_OK;
            end_r <= 16'hFFFF;
            off1_r <= 16'd8;
            off2_r <= 16'd16;
            over_r <= 1'b0;
            inside_r <= 1'b0;
            last_lane_r <= 3'd0;
        end else if (accept) begin
            p01_r <= {1'b0, word[0]} + {1'b0, word[1]};
            p23_r <= {1'b0, word[2]} + {1'b0, word[3]};
            acc <= csa_s + csa_c;
            hdr_bad_r <= hdr_bad;
            if (b0_here) begin
                b0_seen_r <= 1'b1;
                pay_r <= s_axis_start + {10'd0, b0_ihl, 2'b00};
            end
            // next beat's lane 0 - payload start: 16 - lane - 4 * IHL from byte 0's beat on
            m_axis_rel1 <= b0_here ? rel1_b0 : m_axis_rel1 + 9'sd8;
            done_r <= {done_r[0], done_r[0] | end_here};
            end_r2 <= !s_axis_tlast && near_next && known && m_axis_rel1[8:3] == 6'h3F;   // in [-8, -1]
            // from registers only: the total length is in long before the verdict
            end_r <= s_axis_start + totlen;
            m_axis_len <= totlen - {9'd0, hlen};
            off1_r <= off1_r + 16'd8;
            off2_r <= off2_r + 16'd8;
            // the frame is short of end_r if it ends in the next beat: always (end_r past
            // that beat) or unless its lane last_lane_r is kept (end_r within it)
            over_r <= off2_end[16];
            inside_r <= off1_end[16] && !off2_end[16];
            last_lane_r <= end_r[2:0] - 3'd1;
            if (judge) begin
                judged_r <= 1'b1;
                if (rsn_r == `RSN_OK)
                    rsn_r <= hdr_bad_r ? `RSN_IPHDR : (!sum_ok ? `RSN_CSUM : `RSN_OK);
            end
            if (beat != 4'd15) beat <= beat + 4'd1;
            if (s_axis_tlast) begin
                beat <= 4'd0;
                p01_r <= 17'd0;
                p23_r <= 17'd0;
                acc <= 21'd0;
                b0_seen_r <= 1'b0;
                done_r <= 2'd0;
                judged_r <= 1'b0;
                rsn_r <= `RSN_OK;
                end_r <= 16'hFFFF;
                off1_r <= 16'd8;
                off2_r <= 16'd16;
            end
        end
    end
endmodule
`default_nettype wire
