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
    input  wire signed [8:0] s_axis_rel,// ... subtracted from this beat's lane 0 offset (mod 256)
    input  wire [3:0]  s_axis_rel_ge,   // bit g: s_axis_rel >= -2g, registered beside it

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
    reg  [12:0] beat;
    reg  [7:0]  hdr [0:19];
    reg  [63:0] hwords_r;               // this beat's header words (others zero), a beat late
    reg  [17:0] sum4_r;                 // their sum, two beats late
    reg  [20:0] acc;                    // one's-complement sum so far, carries kept
    reg         b0_seen_r;              // header byte 0 (version, IHL) seen before this beat
    reg  [1:0]  done_r;                 // header complete 1 / 2 beats ago
    reg         judged_r;               // verdict taken
    reg  [2:0]  rsn_r;
    reg  [15:0] end_r;                  // start + total length
    reg  [15:0] off1_r, off2_r;
    reg  [15:0] pay_r;                  // start + header length, registered with b0_seen_r         // frame offsets of the next beat's and the one after's lane 0
    reg         over_r, inside_r;       // the frame is short of end_r if it ends in this beat:
    reg  [2:0]  last_lane_r;            //   always / unless lane last_lane_r is kept

    wire        near = beat < 13'd16;   // within the first 128 bytes
    wire signed [8:0] rel = s_axis_rel;

    // byte 0 (version, IHL) in this beat; the header is at least 20 bytes long, so its end,
    // and the payload's start, are always reckoned from the registered IHL
    wire        b0_here = near && rel >= -9'sd7 && rel <= 9'sd0;
    wire [6:0]  hlen = {1'b0, hdr[0][3:0], 2'b00};
    wire        known = b0_seen_r;
    // worked out a beat ahead, from registers: the header bytes from the next beat's lane 0
    // on are -m_axis_rel1 once the IHL is in; before, the next beat lies within the first 20
    // bytes (12 - rel of them from its lane 0), so no comparison needs an adder
    wire        near_next = beat < 13'd15;
    reg  [3:0]  hin_r;                  // word g of this beat is a header word
    reg  [19:0] hit_r;                  // header byte g is in this beat
    reg         end_r2;                 // the header's last byte is in this beat
    wire        end_here = end_r2;

    wire accept = s_axis_tvalid && s_axis_tready;

    // the header bytes and checksum words of this beat
    wire [15:0] word [0:3];
    genvar g;
    generate
        for (g = 0; g < 20; g = g + 1) begin : capture
            // header byte g lies in the next beat: worked out a beat ahead, into hit_r (in
            // beat 1 a VLAN tag is not known yet; bytes caught there by mistake are caught
            // again, right, in beat 2)
            localparam signed [8:0] G = g;
            wire [2:0] d = G[2:0] - rel[2:0];
            always @(posedge clk)
                if (rst) hit_r[g] <= 1'b0;
                else if (accept) hit_r[g] <= !s_axis_tlast && near_next && rel >= G - 9'sd15 && rel <= G - 9'sd8;
            always @(posedge clk)
                if (rst) hdr[g] <= 8'd0;        // a defined length before the first header
                else if (accept && hit_r[g]) hdr[g] <= s_axis_tdata[d*8 +: 8];
        end
        for (g = 0; g < 4; g = g + 1) begin : words_in_beat
            localparam signed [8:0] W = 2 * g;
            // (rel itself decides the lower bound: a VLAN tag is known only in beat 1 itself;
            // rel >= -W comes registered from the Ethernet layer, beside rel)
            wire in_hdr = hin_r[g] && s_axis_rel_ge[g];
            assign word[g] = in_hdr ? {s_axis_tdata[16*g +: 8], s_axis_tdata[16*g + 8 +: 8]} : 16'd0;
            always @(posedge clk)
                if (rst) hin_r[g] <= 1'b0;
                else if (accept) hin_r[g] <= !s_axis_tlast && near_next && rel >= -9'sd8 - W &&
                                            (known ? m_axis_rel1 < -W : rel < 9'sd12 - W);
        end
    endgenerate

    wire [15:0] totlen = {hdr[2], hdr[3]};
    wire [2:0]  b0_lane = 3'd0 - rel[2:0];                     // byte 0's lane, in its beat
    wire [3:0]  b0_ihl = s_axis_tdata[8*b0_lane +: 4];
    // the header checks out when its one's-complement sum is 0xFFFF; the sum is below 2^21,
    // so one fold decides it. Two beats after the header, its last beat's share is in sum4_r.
    wire [20:0] total  = acc + {3'd0, sum4_r};
    // fold == 0xFFFF without the fold's adder: the low half must be 0xFFFF minus the high
    wire        sum_ok = total[15:5] == 11'h7FF && total[4:0] == ~total[20:16];
    wire        hdr_bad = hdr[0][7:4] != 4'd4 || hdr[0][3:0] < 4'd5 || hdr[9] != 8'd17 ||
                          hdr[6][5] || {hdr[6][4:0], hdr[7]} != 13'd0 ||
                          totlen < {10'd0, hdr[0][3:0], 2'b00};
    wire        judge = done_r[1] && !judged_r;

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
            beat <= 13'd0;
            hwords_r <= 64'd0;
            sum4_r <= 18'd0;
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
            hwords_r <= {word[3], word[2], word[1], word[0]};
            sum4_r <= ({2'd0, hwords_r[15:0]} + {2'd0, hwords_r[31:16]}) +
                      ({2'd0, hwords_r[47:32]} + {2'd0, hwords_r[63:48]});
            acc <= acc + {3'd0, sum4_r};
            if (b0_here) begin
                b0_seen_r <= 1'b1;
                pay_r <= s_axis_start + {10'd0, b0_ihl, 2'b00};
            end
            // next beat's lane 0 - payload start: rel + 16 - 4 * IHL from byte 0's beat on
            m_axis_rel1 <= b0_here ? rel - $signed({3'd0, b0_ihl - 4'd4, 2'b00}) : m_axis_rel1 + 9'sd8;
            done_r <= {done_r[0], done_r[0] | end_here};
            end_r2 <= !s_axis_tlast && near_next && known && m_axis_rel1 >= -9'sd8 && m_axis_rel1 <= -9'sd1;
            // from registers only: the total length is in long before the verdict
            end_r <= s_axis_start + totlen;
            m_axis_len <= totlen - {9'd0, hlen};
            off1_r <= off1_r + 16'd8;
            off2_r <= off2_r + 16'd8;
            // the frame is short of end_r if it ends in the next beat: always (end_r past
            // that beat) or unless its lane last_lane_r is kept (end_r within it)
            over_r <= end_r > off2_r;
            inside_r <= end_r > off1_r && end_r <= off2_r;
            last_lane_r <= end_r[2:0] - 3'd1;
            if (judge) begin
                judged_r <= 1'b1;
                if (rsn_r == `RSN_OK)
                    rsn_r <= hdr_bad ? `RSN_IPHDR : (!sum_ok ? `RSN_CSUM : `RSN_OK);
            end
            if (beat != 13'h1FFF) beat <= beat + 13'd1;
            if (s_axis_tlast) begin
                beat <= 13'd0;
                hwords_r <= 64'd0;
                sum4_r <= 18'd0;
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
