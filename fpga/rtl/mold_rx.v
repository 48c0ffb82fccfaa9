`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// MoldUDP64 receive layer: session (10 bytes), sequence number (8), message count (2).
// Registered output. tkeep leaves marking only the message-block bytes of the packet (AXI
// null bytes elsewhere; meaningful where m_axis_ok, the drop reason is not waited for), with
// the packet's first sequence number and count beside them.
//
// Sequence status, on the last beat of every packet that got this far intact: a gap (the
// sequence number is past the next one expected), a heartbeat (count 0) or the end of the
// session (count 0xFFFF) is counted and pulsed on status_event. A new session name restarts
// the expectation without counting a gap. The status registers settle five cycles after
// the packet's last beat.
//
// s_axis_start is used a beat late (registered here, for timing): it is known two beats
// before the MoldUDP64 header begins. The datagram's end is reckoned from the UDP length
// (s_axis_len) and this layer's own position in the datagram (pos_r), not from an end
// offset, so no two variables are added before the comparison.
module mold_rx (
    input  wire        clk,
    input  wire        rst,

    input  wire [63:0] s_axis_tdata,
    input  wire [7:0]  s_axis_tkeep,
    input  wire        s_axis_tvalid,
    output wire        s_axis_tready,
    input  wire        s_axis_tlast,
    input  wire [2:0]  s_axis_tuser,
    input  wire [95:0] s_axis_ts,
    input  wire [15:0] s_axis_start,    // frame offset of the MoldUDP64 header; 16'hFFFF until known ...
    input  wire signed [8:0] s_axis_rel1, // ... subtracted from the next beat's lane 0 offset
    input  wire [15:0] s_axis_len,      // UDP length, its 8-byte header included

    output reg  [63:0] m_axis_tdata,
    output reg  [7:0]  m_axis_tkeep,    // message-block bytes only ...
    output reg  [2:0]  m_axis_lo,       // ... the first of them, and whether there are any, all
    output reg         m_axis_any,      //   meaningful where m_axis_ok (they leave ungated by it, for timing;
    output reg         m_axis_any06,    //   any06: some in lanes 0-6)
    output reg         m_axis_ok,       // m_axis_tuser is RSN_OK
    output reg  [`BL_W-1:0] m_axis_lanes, // block_lanes(m_axis_tdata), for the framer
    output reg         m_axis_tvalid,
    input  wire        m_axis_tready,
    output reg         m_axis_tlast,
    output reg  [2:0]  m_axis_tuser,
    output reg  [95:0] m_axis_ts,
    output reg  [63:0] m_axis_seq,      // sequence number of the packet's first message
    output reg  [15:0] m_axis_count,    // message count from the header

    output reg  [79:0] status_session,
    output reg  [63:0] status_next_seq, // next sequence number expected
    output reg  [31:0] status_gaps,
    output reg  [31:0] status_heartbeats,
    output reg  [31:0] status_end_of_session,
    output reg  [2:0]  status_event     // one cycle: {end of session, heartbeat, gap}
);
    `include "itch_blocks.vh"
    reg  [3:0]  beat;                   // held at 15
    reg  [7:0]  hdr [0:19];
    reg         done_r;
    reg         started_r;              // a session name has been seen
    reg  [2:0]  rsn_r;
    reg  [15:0] start_r;                // s_axis_start a beat late
    reg  [2:0]  lo_r;                   // this beat's first lane of the blocks (where it has any), and
    reg  [7:0]  lo_th_r, hi_th_r;       //   as thermometers, lanes from lo_r on and before the datagram's end
    reg         window_r;               // lo_r and hi_th_r are meaningful
    reg         past_r;                 // the MoldUDP64 header runs past the datagram

    reg         known;                  // start_r != 16'hFFFF, registered beside it
    reg  [2:0]  rel_r;                  // this beat's lane 0 minus start_r, mod 8, worked out a beat ahead
    wire [2:0]  rel = rel_r;
    // which header bytes the next beat holds, decided a beat ahead (from rel_next)
    wire signed [8:0] rel_next = s_axis_rel1;
    wire        near_next = beat != 4'd15;  // headers lie in the first 128 bytes
    // v in (c - 8, c] as bit tests on v's octet and lane (no comparator's carry chain)
    function in8(input [8:0] v, input [8:0] c);
        in8 = v[8:3] == c[8:3] && v[2:0] <= c[2:0] || v[8:3] == c[8:3] - 6'd1 && v[2:0] > c[2:0];
    endfunction

    reg  [19:0] hit_r;                 // byte g of the header lies in this beat
    reg         last_hit_r;             // the header's last byte lies in this beat
    wire        end_here = known && !done_r && last_hit_r;
    wire        accept = s_axis_tvalid && s_axis_tready;
    // the next beat's lane 0 offset, as counters (no adder on beat): minus the header's
    // 20 bytes, and plus 16
    reg  signed [16:0] off1m20_r;
    reg  [15:0] off1p16_r;
    reg  signed [16:0] pos_r;           // the next beat's lane 0 - start_r + 8: its offset in the datagram

    // header bytes as known after this beat (a heartbeat's header ends on its last beat)
    wire [7:0] h [0:19];
    genvar g;
    generate
        for (g = 0; g < 20; g = g + 1) begin : capture
            localparam signed [8:0] GH = g;
            wire [2:0] d = GH[2:0] - rel[2:0];     // its lane, when hit_r[g]
            assign h[g] = known && hit_r[g] ? s_axis_tdata[d*8 +: 8] : hdr[g];
            always @(posedge clk)
                if (accept) hit_r[g] <= near_next && in8(rel_next, GH);
            always @(posedge clk)
                if (rst) hdr[g] <= 8'd0;
                else if (accept) hdr[g] <= h[g];
        end
    endgenerate

    // message-block bytes: frame offsets [start + 20, end), worked out a beat ahead, as bit
    // tests: clamp8(v - 8) mod 8, and the lanes from clamp8(v - 8) on
    function [2:0] clamp8m8(input signed [16:0] v);
        clamp8m8 = v[16] || v[15:3] == 13'd0 || v[15:4] != 12'd0 ? 3'd0 : v[2:0];
    endfunction
    function [7:0] from_m8(input signed [16:0] v);
        integer i;
        for (i = 0; i < 8; i = i + 1)
            from_m8[i] = v[16] || v[15:3] == 13'd0 || v[15:4] == 12'd0 && v[2:0] <= i[2:0];
    endfunction
    // the blocks' start a beat later still: start_r is known at least three beats before the
    // blocks begin, so the difference is registered and the next one is 8 less (no chain
    // between the registers and lo_r)
    wire signed [16:0] to_start = $signed({1'b0, start_r}) - off1m20_r;
    reg  signed [16:0] to_start_r;      // to_start of the last beat: this beat's plus 8
    // the lanes before the datagram's end, below to_end = len - pos_r clamped to [0, 8], and
    // like the blocks' start a beat later still: the difference is registered and the next
    // one is 8 less, tested as bits. The UDP length is in two beats before the blocks
    // begin: the UDP header starts 2 mod 4 bytes into the frame (14 or 18, plus the IPv4
    // header's multiple of 4), so its length's last byte is not in a beat's lane 0, and the
    // blocks start 23 bytes after it.
    reg  signed [16:0] to_end_r;        // to_end of the last beat: this beat's plus 8
    reg  [7:0] below_end;               // lanes below clamp8(to_end_r - 8)
    integer i;
    always @*
        for (i = 0; i < 8; i = i + 1)
            below_end[i] = !to_end_r[16] && (to_end_r[15:4] != 12'd0 || to_end_r[3] && to_end_r[2:0] > i[2:0]);
    // lane g is kept where it is at or after lo, before the datagram's end and before the
    // frame's last byte (a kept lane at or after it)
    wire [7:0] keep;
    generate
        for (g = 0; g < 8; g = g + 1) begin : lanes
            assign keep[g] = lo_th_r[g] && hi_th_r[g] && s_axis_tkeep[7:g] != 0;
        end
    endgenerate

    wire [79:0] session = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]};
    wire [63:0] seq     = {h[10], h[11], h[12], h[13], h[14], h[15], h[16], h[17]};
    wire [15:0] count   = {h[18], h[19]};

    // a header short of 20 bytes, or running past the UDP datagram, shows at the last beat
    wire       short_hdr = !done_r && !end_here || !window_r || past_r;
    wire [2:0] own = rsn_r == `RSN_OK && s_axis_tlast && short_hdr ? `RSN_MOLD : rsn_r;
    wire [2:0] rsn = s_axis_tuser != `RSN_OK ? s_axis_tuser : own;

    // sequence status, settled five cycles after the last beat of an intact packet (the
    // next packet's last beat is further off): each cycle at most one 16-bit comparison or
    // the addition deep, the 64-bit comparisons taken 16 bits at a time and joined a cycle later
    reg  [3:0]  judge_r;                // judge_r[i]: cycle i + 1 after the packet's last beat
    reg  [79:0] session_r;
    reg  [63:0] seq_r, after_r;
    reg  [15:0] count_r;
    reg  [4:0]  new_r;                  // 16-bit pieces of the session name that differ
    reg  [3:0]  gt_r, gt2_r;            // 16-bit pieces of the first / second comparison: greater,
    reg  [3:1]  eq_r, eq2_r;            //   equal (the lowest piece's equality is not needed)
    reg         fresh_r, ahead_r, gap_r, grow_r;
    // a > b from its 16-bit pieces' verdicts, most significant first
    integer j;
    // b > a as the sign of a - b (a comparison's carry out needs an extra cell off the chain)
    /* verilator lint_off UNUSEDSIGNAL */
    function sub17(input [15:0] a, input [15:0] b);
        reg [16:0] d;
        begin
            d = {1'b0, a} - {1'b0, b};
            sub17 = d[16];
        end
    endfunction
    /* verilator lint_on UNUSEDSIGNAL */
    function gt4(input [3:0] gt, input [3:1] eq);
        gt4 = gt[3] || eq[3] && (gt[2] || eq[2] && (gt[1] || eq[1] && gt[0]));
    endfunction
    wire        hb    = count_r == 16'd0;
    wire        eos   = count_r == 16'hFFFF;

    // lock-step: every stage moves when the output may (no valid in the ready path, so the
    // ready is one net from m_axis_tready to every stage's enables, not a chain of gates)
    assign s_axis_tready = m_axis_tready;

    always @(posedge clk) begin
        status_event <= 3'd0;
        judge_r <= {judge_r[2:0], accept && s_axis_tlast && rsn == `RSN_OK};
        if (accept && s_axis_tlast) begin
            session_r <= session;
            seq_r <= seq;
            count_r <= count;
        end
        if (rst) begin
            m_axis_tvalid <= 1'b0;
            beat <= 4'd0;
            done_r <= 1'b0;
            started_r <= 1'b0;
            rsn_r <= `RSN_OK;
            start_r <= 16'hFFFF;
            known <= 1'b0;
            off1m20_r <= -17'sd12;
            off1p16_r <= 16'd24;
            window_r <= 1'b0;
            hi_th_r <= 8'd0;
            judge_r <= 4'd0;
            status_session <= 80'd0;
            status_next_seq <= 64'd0;
            status_gaps <= 32'd0;
            status_heartbeats <= 32'd0;
            status_end_of_session <= 32'd0;
        end else begin
            if (s_axis_tready) m_axis_tvalid <= s_axis_tvalid;
            if (accept) begin
                m_axis_tdata <= s_axis_tdata;
                m_axis_tkeep <= keep;
                m_axis_tlast <= s_axis_tlast;
                m_axis_tuser <= rsn;
                m_axis_ts    <= s_axis_ts;
                m_axis_seq   <= seq;
                m_axis_count <= count;
                start_r  <= s_axis_start;
                known    <= s_axis_start != 16'hFFFF;
                rel_r    <= rel_next[2:0];
                last_hit_r <= near_next && in8(rel_next, 9'd19);
                window_r <= known;
                to_start_r <= to_start;
                lo_r     <= clamp8m8(to_start_r);
                lo_th_r  <= from_m8(to_start_r);
                hi_th_r  <= known ? below_end : 8'd0;
                past_r   <= s_axis_len < 16'd28;
                pos_r    <= $signed({1'b0, off1p16_r}) - $signed({1'b0, s_axis_start});
                to_end_r <= $signed({1'b0, s_axis_len}) - pos_r;
                m_axis_lo <= lo_r;
                m_axis_any <= keep != 8'd0;
                m_axis_any06 <= keep[6:0] != 7'd0;
                m_axis_lanes <= block_lanes(s_axis_tdata);
                m_axis_ok <= rsn == `RSN_OK;
                if (end_here) done_r <= 1'b1;
                rsn_r <= own;
                if (beat != 4'd15) beat <= beat + 4'd1;
                off1m20_r <= off1m20_r + 17'sd8;
                off1p16_r <= off1p16_r + 16'd8;
                if (s_axis_tlast) begin
                    beat <= 4'd0;
                    off1m20_r <= -17'sd12;
                    off1p16_r <= 16'd24;
                            done_r <= 1'b0;
                    rsn_r <= `RSN_OK;
                    start_r <= 16'hFFFF;
                    known <= 1'b0;
                    window_r <= 1'b0;
                    hi_th_r <= 8'd0;
                end
            end
            if (judge_r[0]) begin         // the pieces of seq > next and of the session; the sum
                for (j = 0; j < 5; j = j + 1)
                    new_r[j] <= session_r[16*j +: 16] != status_session[16*j +: 16];
                for (j = 0; j < 4; j = j + 1) begin
                    gt_r[j] <= sub17(status_next_seq[16*j +: 16], seq_r[16*j +: 16]);
                    if (j > 0) eq_r[j] <= seq_r[16*j +: 16] == status_next_seq[16*j +: 16];
                end
                after_r <= seq_r + {48'd0, count_r};
            end
            if (judge_r[1]) begin         // joined; the pieces of after > next
                fresh_r <= !started_r || new_r != 5'd0;
                ahead_r <= gt4(gt_r, eq_r);
                for (j = 0; j < 4; j = j + 1) begin
                    gt2_r[j] <= sub17(status_next_seq[16*j +: 16], after_r[16*j +: 16]);
                    if (j > 0) eq2_r[j] <= after_r[16*j +: 16] == status_next_seq[16*j +: 16];
                end
            end
            if (judge_r[2]) begin         // joined
                gap_r <= !fresh_r && ahead_r;
                grow_r <= fresh_r || gt4(gt2_r, eq2_r);
            end
            if (judge_r[3]) begin         // count and expect
                started_r <= 1'b1;
                status_session <= session_r;
                status_event <= {eos, hb, gap_r};
                if (gap_r) status_gaps <= status_gaps + 32'd1;
                if (hb) status_heartbeats <= status_heartbeats + 32'd1;
                if (eos) status_end_of_session <= status_end_of_session + 32'd1;
                if (eos) status_next_seq <= seq_r;
                else if (grow_r) status_next_seq <= after_r;
            end
        end
    end
endmodule
`default_nettype wire
