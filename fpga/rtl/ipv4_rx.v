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

    output wire [63:0] m_axis_tdata,
    output wire [7:0]  m_axis_tkeep,
    output wire        m_axis_tvalid,
    input  wire        m_axis_tready,
    output wire        m_axis_tlast,
    output wire [2:0]  m_axis_tuser,
    output wire [95:0] m_axis_ts,
    output wire [15:0] m_axis_start,    // frame offset of the IPv4 payload; 16'hFFFF until known
    output wire [15:0] m_axis_end,      // frame offset just past the IPv4 packet (once judged)
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
    reg         over_r, inside_r;       // the frame is short of end_r if it ends in this beat:
    reg  [2:0]  last_lane_r;            //   always / unless lane last_lane_r is kept

    wire        near = beat < 13'd16;   // within the first 128 bytes
    wire signed [8:0] rel = s_axis_rel;

    // byte 0 (version, IHL) in this beat; the header is at least 20 bytes long, so its end,
    // and the payload's start, are always reckoned from the registered IHL
    wire        b0_here = near && rel >= -9'sd7 && rel <= 9'sd0;
    wire [6:0]  hlen = {1'b0, hdr[0][3:0], 2'b00};
    wire        known = b0_seen_r;
    wire signed [8:0] last_rel = $signed({2'd0, hlen}) - 9'sd1 - rel;
    wire        end_here = near && known && !done_r[0] && last_rel >= 0 && last_rel < 8;

    wire accept = s_axis_tvalid && s_axis_tready;

    // the header bytes and checksum words of this beat
    wire [15:0] word [0:3];
    genvar g;
    generate
        for (g = 0; g < 20; g = g + 1) begin : capture
            localparam signed [8:0] G = g;
            wire signed [8:0] d = G - rel;
            always @(posedge clk)
                if (rst) hdr[g] <= 8'd0;        // a defined length before the first header
                else if (accept && near && d >= 0 && d < 8) hdr[g] <= s_axis_tdata[d[2:0]*8 +: 8];
        end
        for (g = 0; g < 4; g = g + 1) begin : words_in_beat
            // the header is at least 20 bytes long: in byte 0's beat every later word is in it
            localparam signed [8:0] W = 2 * g;
            wire in_hdr = near && (b0_here || known) && !done_r[0] && rel + W >= 0 &&
                          (b0_here || rel + W < $signed({2'd0, hlen}));
            assign word[g] = in_hdr ? {s_axis_tdata[16*g +: 8], s_axis_tdata[16*g + 8 +: 8]} : 16'd0;
        end
    endgenerate

    wire [15:0] totlen = {hdr[2], hdr[3]};
    // the header checks out when its one's-complement sum is 0xFFFF; the sum is below 2^21,
    // so one fold decides it. Two beats after the header, its last beat's share is in sum4_r.
    wire [20:0] total  = acc + {3'd0, sum4_r};
    wire [16:0] fold1  = {1'b0, total[15:0]} + {12'd0, total[20:16]};
    wire        hdr_bad = hdr[0][7:4] != 4'd4 || hdr[0][3:0] < 4'd5 || hdr[9] != 8'd17 ||
                          hdr[6][5] || {hdr[6][4:0], hdr[7]} != 13'd0 ||
                          totlen < {10'd0, hdr[0][3:0], 2'b00};
    wire        judge = done_r[1] && !judged_r;

    // the frame ends short of the total length, or before the verdict was taken
    wire trunc = s_axis_tlast && (!judged_r || over_r || inside_r && !s_axis_tkeep[last_lane_r]);
    wire signed [16:0] left = $signed({1'b0, end_r}) - $signed({1'b0, beat + 13'd1, 3'b000});
    wire [2:0] own = rsn_r == `RSN_OK && trunc ? `RSN_TRUNC : rsn_r;

    assign m_axis_tdata  = s_axis_tdata;
    assign m_axis_tkeep  = s_axis_tkeep;
    assign m_axis_tvalid = s_axis_tvalid;
    assign m_axis_tlast  = s_axis_tlast;
    assign s_axis_tready = m_axis_tready;
    assign m_axis_tuser  = s_axis_tuser != `RSN_OK ? s_axis_tuser : own;
    assign m_axis_ts     = s_axis_ts;
    assign m_axis_start  = known ? s_axis_start + {9'd0, hlen} : 16'hFFFF;
    assign m_axis_end    = end_r;
    assign m_axis_dst    = {hdr[16], hdr[17], hdr[18], hdr[19]};

    always @(posedge clk) begin
        if (rst) begin
            beat <= 13'd0;
            hwords_r <= 64'd0;
            sum4_r <= 18'd0;
            acc <= 21'd0;
            b0_seen_r <= 1'b0;
            done_r <= 2'd0;
            judged_r <= 1'b0;
            rsn_r <= `RSN_OK;
            end_r <= 16'hFFFF;
            over_r <= 1'b0;
            inside_r <= 1'b0;
            last_lane_r <= 3'd0;
        end else if (accept) begin
            hwords_r <= {word[3], word[2], word[1], word[0]};
            sum4_r <= ({2'd0, hwords_r[15:0]} + {2'd0, hwords_r[31:16]}) +
                      ({2'd0, hwords_r[47:32]} + {2'd0, hwords_r[63:48]});
            acc <= acc + {3'd0, sum4_r};
            if (b0_here) b0_seen_r <= 1'b1;
            done_r <= {done_r[0], done_r[0] | end_here};
            if (done_r[0]) end_r <= s_axis_start + totlen;
            over_r <= left > 17'sd8;
            inside_r <= left > 17'sd0 && left <= 17'sd8;
            last_lane_r <= left[2:0] - 3'd1;
            if (judge) begin
                judged_r <= 1'b1;
                if (rsn_r == `RSN_OK)
                    rsn_r <= hdr_bad ? `RSN_IPHDR : (fold1 != 17'h0FFFF ? `RSN_CSUM : `RSN_OK);
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
            end
        end
    end
endmodule
`default_nettype wire
