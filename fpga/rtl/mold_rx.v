`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// MoldUDP64 receive layer: session (10 bytes), sequence number (8), message count (2).
// Registered output. tkeep leaves marking only the message-block bytes of the packet (AXI
// null bytes elsewhere), with the packet's first sequence number and count beside them.
//
// Sequence status, on the last beat of every packet that got this far intact: a gap (the
// sequence number is past the next one expected), a heartbeat (count 0) or the end of the
// session (count 0xFFFF) is counted and pulsed on status_event. A new session name restarts
// the expectation without counting a gap. The status registers settle four cycles after
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
    output reg  [3:0]  m_axis_lo,       // ... which are lanes [m_axis_lo, m_axis_hi) where m_axis_ok
    output reg  [3:0]  m_axis_hi,
    output reg         m_axis_ok,       // m_axis_tuser is RSN_OK (lo and hi leave ungated by it, for timing)
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
    reg  [12:0] beat;
    reg  [7:0]  hdr [0:19];
    reg         done_r;
    reg         started_r;              // a session name has been seen
    reg  [2:0]  rsn_r;
    reg  [15:0] start_r;                // s_axis_start a beat late
    reg  [3:0]  lo_r, hi_r;             // this beat's lanes inside [blocks' start, datagram's end)
    reg         window_r;               // lo_r and hi_r are meaningful
    reg         past_r;                 // the MoldUDP64 header runs past the datagram

    reg         known;                  // start_r != 16'hFFFF, registered beside it
    reg  [2:0]  rel_r;                  // this beat's lane 0 minus start_r, mod 8, worked out a beat ahead
    wire [2:0]  rel = rel_r;
    // which header bytes the next beat holds, decided a beat ahead (from rel_next)
    wire signed [8:0] rel_next = s_axis_rel1;
    wire        near_next = beat < 13'd15;  // headers lie in the first 128 bytes
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
                if (accept) hit_r[g] <= near_next && rel_next <= GH && rel_next > GH - 9'sd8;
            always @(posedge clk)
                if (rst) hdr[g] <= 8'd0;
                else if (accept) hdr[g] <= h[g];
        end
    endgenerate

    // message-block bytes: frame offsets [start + 20, end), worked out a beat ahead
    function [3:0] clamp8(input signed [16:0] v);     // bit tests, not comparators
        clamp8 = v[16] ? 4'd0 : v[15:3] != 13'd0 ? 4'd8 : {1'b0, v[2:0]};
    endfunction
    // clamp8(v - 8), as bit tests on v
    function [3:0] clamp8m8(input signed [16:0] v);
        clamp8m8 = v[16] || v[15:3] == 13'd0 ? 4'd0 : v[15:4] != 12'd0 ? 4'd8 : {1'b0, v[2:0]};
    endfunction
    // the blocks' start a beat later still: start_r is known at least three beats before the
    // blocks begin, so the difference is registered and the next one is 8 less (no chain
    // between the registers and lo_r)
    wire signed [16:0] to_start = $signed({1'b0, start_r}) - off1m20_r;
    reg  signed [16:0] to_start_r;      // to_start of the last beat: this beat's plus 8
    wire signed [16:0] to_end   = $signed({1'b0, s_axis_len}) - pos_r;
    reg  [3:0] frame_hi;                // the frame's bytes in this beat: lanes [0, frame_hi)
    integer k;
    always @* begin
        frame_hi = 4'd0;
        for (k = 0; k < 8; k = k + 1) if (s_axis_tkeep[k]) frame_hi = k[3:0] + 4'd1;
    end
    wire [3:0] lo = lo_r;
    wire [3:0] hi = !window_r ? 4'd0 : frame_hi < hi_r ? frame_hi : hi_r;
    wire [7:0] keep;
    generate
        for (g = 0; g < 8; g = g + 1) begin : lanes
            assign keep[g] = g >= lo && g < hi;
        end
    endgenerate

    wire [79:0] session = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]};
    wire [63:0] seq     = {h[10], h[11], h[12], h[13], h[14], h[15], h[16], h[17]};
    wire [15:0] count   = {h[18], h[19]};

    // a header short of 20 bytes, or running past the UDP datagram, shows at the last beat
    wire       short_hdr = !done_r && !end_here || !window_r || past_r;
    wire [2:0] own = rsn_r == `RSN_OK && s_axis_tlast && short_hdr ? `RSN_MOLD : rsn_r;
    wire [2:0] rsn = s_axis_tuser != `RSN_OK ? s_axis_tuser : own;

    // sequence status, settled three cycles after the last beat of an intact packet (each
    // cycle one comparison or addition deep)
    reg         judge_r, judge2_r, judge3_r;
    reg  [79:0] session_r;
    reg  [63:0] seq_r, after_r;
    reg  [15:0] count_r;
    reg         fresh_r, ahead_r, gap_r, grow_r;
    wire        fresh = !started_r || session_r != status_session;
    wire        hb    = count_r == 16'd0;
    wire        eos   = count_r == 16'hFFFF;

    // lock-step: every stage moves when the output may (no valid in the ready path, so the
    // ready is one net from m_axis_tready to every stage's enables, not a chain of gates)
    assign s_axis_tready = m_axis_tready;

    always @(posedge clk) begin
        status_event <= 3'd0;
        judge_r <= accept && s_axis_tlast && rsn == `RSN_OK;
        judge2_r <= judge_r;
        judge3_r <= judge2_r;
        if (accept && s_axis_tlast) begin
            session_r <= session;
            seq_r <= seq;
            count_r <= count;
        end
        if (rst) begin
            m_axis_tvalid <= 1'b0;
            beat <= 13'd0;
            done_r <= 1'b0;
            started_r <= 1'b0;
            rsn_r <= `RSN_OK;
            start_r <= 16'hFFFF;
            known <= 1'b0;
            off1m20_r <= -17'sd12;
            off1p16_r <= 16'd24;
            window_r <= 1'b0;
            judge_r <= 1'b0;
            judge2_r <= 1'b0;
            judge3_r <= 1'b0;
            status_session <= 80'd0;
            status_next_seq <= 64'd0;
            status_gaps <= 32'd0;
            status_heartbeats <= 32'd0;
            status_end_of_session <= 32'd0;
        end else begin
            if (s_axis_tready) m_axis_tvalid <= s_axis_tvalid;
            if (accept) begin
                m_axis_tdata <= s_axis_tdata;
                m_axis_tkeep <= rsn == `RSN_OK ? keep : 8'd0;
                m_axis_tlast <= s_axis_tlast;
                m_axis_tuser <= rsn;
                m_axis_ts    <= s_axis_ts;
                m_axis_seq   <= seq;
                m_axis_count <= count;
                start_r  <= s_axis_start;
                known    <= s_axis_start != 16'hFFFF;
                rel_r    <= rel_next[2:0];
                last_hit_r <= near_next && rel_next <= 9'sd19 && rel_next > 9'sd11;
                window_r <= known;
                to_start_r <= to_start;
                lo_r     <= clamp8m8(to_start_r);
                hi_r     <= clamp8(to_end);
                past_r   <= s_axis_len < 16'd28;
                pos_r    <= $signed({1'b0, off1p16_r}) - $signed({1'b0, s_axis_start});
                m_axis_lo <= lo < hi ? lo : 4'd0;
                m_axis_hi <= lo < hi ? hi : 4'd0;
                m_axis_ok <= rsn == `RSN_OK;
                if (end_here) done_r <= 1'b1;
                rsn_r <= own;
                if (beat != 13'h1FFF) beat <= beat + 13'd1;
                off1m20_r <= off1m20_r + 17'sd8;
                off1p16_r <= off1p16_r + 16'd8;
                if (s_axis_tlast) begin
                    beat <= 13'd0;
                    off1m20_r <= -17'sd12;
                    off1p16_r <= 16'd24;
                    done_r <= 1'b0;
                    rsn_r <= `RSN_OK;
                    start_r <= 16'hFFFF;
                    known <= 1'b0;
                    window_r <= 1'b0;
                end
            end
            if (judge_r) begin            // first cycle: compare and add
                fresh_r <= fresh;
                ahead_r <= seq_r > status_next_seq;
                after_r <= seq_r + {48'd0, count_r};
            end
            if (judge2_r) begin           // second cycle: compare the sum
                gap_r <= !fresh_r && ahead_r;
                grow_r <= fresh_r || after_r > status_next_seq;
            end
            if (judge3_r) begin           // third cycle: count and expect
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
