`timescale 1ns / 1ps
`default_nettype none
`include "feed_defs.vh"
// Cuts the MoldUDP64 message blocks (2-byte big-endian length + ITCH message) out of the
// payload bytes (tkeep marks them; they are contiguous within a beat) and emits one raw
// record per block: up to 50 message bytes, the length, the message's sequence number
// (the packet's plus its index) and the packet's PTP time.
//
// One record per beat at most, so no FIFO: a block whose length is at least 12 (every ITCH
// message is) spans 14 bytes, so two blocks can never end within one 8-byte beat, and the
// length of a block is always known (registered) by the beat in which the block ends. A
// length below 12 cannot be an ITCH message and ends the packet's walk (RSN_MSGLEN); longer
// blocks are walked past whole and reach the decoder truncated, which rejects them.
module itch_framer (
    input  wire         clk,
    input  wire         rst,

    input  wire [63:0]  s_axis_tdata,
    input  wire [7:0]   s_axis_tkeep,   // message-block bytes ...
    input  wire [3:0]   s_axis_lo,      // ... lanes [lo, hi): the same, precomputed for timing
    input  wire [3:0]   s_axis_hi,      //   (meaningful where s_axis_ok)
    input  wire         s_axis_ok,      // s_axis_tuser is RSN_OK
    input  wire         s_axis_tvalid,
    output wire         s_axis_tready,
    input  wire         s_axis_tlast,
    input  wire [2:0]   s_axis_tuser,
    input  wire [95:0]  s_axis_ts,
    input  wire [63:0]  s_axis_seq,
    input  wire [15:0]  s_axis_count,

    output reg          m_rec_valid,
    input  wire         m_rec_ready,
    output reg  [399:0] m_rec_msg,      // message byte k at [8k+7:8k]; past the length, don't care
    output reg  [15:0]  m_rec_len,
    output reg  [63:0]  m_rec_seq,
    output reg  [95:0]  m_rec_ts,
    output reg  [22:0]  m_rec_kind,     // one-hot: the type among the 23 (itch_types.vh), 0 if unknown
    output reg  [22:0]  m_rec_fit,      // m_rec_len is the wire length of type k

    output reg          pkt_done,       // one cycle per packet, with its verdict
    output reg  [2:0]   pkt_reason
);
    `include "itch_types.vh"
    localparam N = 52;                  // buffered block bytes: length prefix + 50

    reg  [7:0]  buf_r [0:N-1];
    reg  [6:0]  idx;                    // bytes of the current block received so far, held at 127
                                        // (past the buffer: the block's end is the countdown's to tell)
    reg         fresh_r;                // idx == 0: the next block starts in this beat, at lane lo
    reg         str_r;                  // idx == 1: its length's second byte is lane 0 of this beat
    reg  [7:0]  eoh_r;                  // one-hot: the current block ends at this lane of the next
    reg  [2:0]  e_r;                    //   payload beat (eoh_r) / at lane e_r of its last beat
    reg         cnt_on_r;               // counting down the beats to the block's last one:
    reg  [12:0] cnt_r;                  //   cnt_r - dec_r payload beats still to pass before it
    reg         dec_r;
    reg  [7:0]  lane_r;                 //   one-hot of e_r, for eoh_r when the count runs out
    reg  [2:0]  shift_r;                // the current block's start lane, negated: its byte g lies in
                                        //   lane g - shift_r (0 while fresh_r)
    reg  [15:0] nblk;                   // blocks completed in this packet before the previous beat,
    reg         end_d;                  //   and whether that beat completed one (counted a beat
                                        //   late: end_now stays off the counter's carry chain)
    reg         first_r;                // nblk == 0
    reg  [63:0] seq_cur;                // sequence number of the next block (nblk > 0)
    reg         bad_r;                  // a length below 12 seen: the packet's walk has ended

    genvar g;

    function [7:0] lane(input [63:0] d, input [2:0] i);
        lane = d[i*8 +: 8];
    endfunction

    // a byte below 12, as bit tests (no carry chain)
    function below12(input [7:2] b);     // bits 7..2 of the byte
        below12 = b[7:4] == 4'd0 && b[3:2] != 2'b11;
    endfunction

    // x + c mod 8 for a constant c, as a table (a LUT, not a carry chain)
    function [2:0] add8(input [2:0] x, input [2:0] c);
        integer j;
        begin
            add8 = 3'd0;
            for (j = 0; j < 8; j = j + 1)
                if (x == j[2:0]) add8 = j[2:0] + c;
        end
    endfunction

    // payload lanes [lo, hi); a block in progress continues at lane 0 (lo is past 0 only in
    // a packet's first payload beat, where no block is in progress)
    wire [3:0]  lo = s_axis_lo;
    wire [3:0]  hi = s_axis_hi;
    wire [7:0]  keep = s_axis_tkeep;
    `define D(i) s_axis_tdata[8*(i) +: 8]
    wire        accept  = s_axis_tvalid && s_axis_tready;
    wire        any     = hi != 4'd0 && s_axis_ok;             // bad tuser: no payload (keep is clear)
    wire        adv     = accept && any && !bad_r;
    wire        end_now = accept && !bad_r && (eoh_r & keep) != 8'd0;
    wire [3:0]  rest    = hi - {1'b0, e_r} - 4'd1;             // the next block's bytes in this beat
    wire [15:0] len     = {buf_r[0], buf_r[1]};

    // Where this beat completes a block's length, all from registers: at lane pair p after a
    // block's end (p = e_r + 1) or at the packet's first block (p = lo), or across the beat
    // boundary (str_r: first byte buffered, second in lane 0). The block's last byte then lies
    // need - 1 = L + p - 7 bytes past this beat (L - 8 across the boundary): lane e = (L + p + 1)
    // mod 8 of the beat cnt = L[15:3] - dec later, dec = (L mod 8 + p + 1 < 8).
    // (lane lo, where the packet's first block starts, is the first lane of keep: one LUT
    // per lane from registers, not a compare on lo)
    wire [6:0]  first_lane = keep[6:0] & ~{keep[5:0], 1'b0};
    wire [6:0]  psel;                   // one-hot p in 0..6
    generate
        for (g = 0; g < 7; g = g + 1) begin : starts
            if (g == 0) begin : first
                assign psel[g] = fresh_r && first_lane[0];
            end else begin : after_end
                assign psel[g] = eoh_r[g-1] || fresh_r && first_lane[g];
            end
        end
    endgenerate
    wire        lb = adv && (psel != 7'd0 || str_r);           // a length completes here

    reg  [15:0] l_sel;                  // the length, its last lane and its countdown
    reg  [2:0]  e_sel;
    reg  [7:0]  lane_sel;               // one-hot of e_sel, decoded per source before the pick
    reg         dec_sel, second;        // second: the length's second byte is a block byte
    reg         short;                  // the length is below 12 (per source, then picked)
    integer p;
    always @* begin
        l_sel = str_r ? {len[15:8], `D(0)} : 16'd0;
        e_sel = str_r ? s_axis_tdata[2:0] : 3'd0;
        lane_sel = str_r ? 8'd1 << s_axis_tdata[2:0] : 8'd0;
        dec_sel = str_r;
        second = str_r && keep[0];
        short = str_r && len[15:8] == 8'd0 && below12(s_axis_tdata[7:2]);
        for (p = 0; p < 7; p = p + 1)
            if (psel[p]) begin
                l_sel = l_sel | {`D(p), `D(p+1)};
                e_sel = e_sel | add8(s_axis_tdata[8*p+8 +: 3], p[2:0] + 3'd1);
                lane_sel = lane_sel | 8'd1 << add8(s_axis_tdata[8*p+8 +: 3], p[2:0] + 3'd1);
                dec_sel = dec_sel | s_axis_tdata[8*p+8 +: 3] <= 3'd6 - p[2:0];
                second = second | keep[p+1];
                short = short | (`D(p) == 8'd0 && below12(s_axis_tdata[8*p+10 +: 6]));
            end
    end

    // the block ends in the very next payload beat: only for lengths 12-15 starting at
    // p <= 2 or across the boundary; a table on the bytes, to keep eoh_r's path short
    wire        b0_zero = len[15:8] == 8'd0;
    reg  [7:0]  eoh_near;
    integer k;
    always @* begin
        for (k = 0; k < 8; k = k + 1)
            eoh_near[k] = str_r && b0_zero && k >= 4 && `D(0) == 8'd8 + k[7:0] ||
                          psel[0] && `D(0) == 8'd0 && k >= 5 && `D(1) == 8'd7 + k[7:0] ||
                          psel[1] && `D(1) == 8'd0 && k >= 6 && `D(2) == 8'd6 + k[7:0] ||
                          psel[2] && `D(2) == 8'd0 && k == 7 && `D(3) == 8'd12;
    end
    `undef D
    wire        cnt_one = cnt_on_r && (dec_r ? cnt_r == 13'd2 : cnt_r == 13'd1);

    wire [15:0] nblk_next = nblk + {15'd0, end_d};
    wire [63:0] seq_eff = first_r ? s_axis_seq : seq_cur;
    wire [15:0] want_blocks = s_axis_count == 16'hFFFF ? 16'd0 : s_axis_count;
    wire [15:0] want_m1 = s_axis_count == 16'hFFFF ? 16'hFFFF : s_axis_count - 16'd1;
    wire        fresh_next = end_now ? rest == 4'd0 : adv ? 1'b0 : fresh_r;
    wire        str_next = end_now ? rest == 4'd1 : adv ? fresh_r && hi - lo == 4'd1 : str_r;
    wire [7:0]  idx_sum = {1'b0, idx} + {4'd0, hi};
    wire [6:0]  idx_next = end_now ? {3'd0, rest} :
                           !adv ? idx : fresh_r ? {3'd0, hi - lo} : idx_sum[7] ? 7'd127 : idx_sum[6:0];

    // the finished block (bytes from the buffer, then from this beat; the decoder zeroes
    // what lies past the length)
    // and the new buffer: bytes from idx on are rewritten every beat (the right ones land as
    // idx passes them), after a block's end the next one's bytes from lane e_r + 1
    /* verilator lint_off UNUSEDSIGNAL */
    wire [8*N-1:0] rec;                 // bytes 0-1 are the length prefix, not part of the record
    /* verilator lint_on UNUSEDSIGNAL */
    // byte g comes from lane g - shift. A block keeps its shift from beat to beat, so it is
    // registered where a block starts: after a block's end (at lane e_r + 1) or at lane lo in
    // the packet's first payload beat. lo is 0 in every other beat and shift_r is 0 in that
    // one (fresh_r), so an OR joins them without a mux on fresh_r.
    wire [2:0]  shift = shift_r | (3'd0 - lo[2:0]);
    // below_r[g]: byte g is buffered (g < idx), a thermometer kept beside idx rather than
    // decoded from it. Within a block it moves up a beat (8 bytes) per payload beat; a
    // beat with fewer payload bytes is the datagram's last, after which no block ends, so
    // bytes protected a little too far no longer matter. The first buffer beat (bytes
    // 0-7) is rewritten wherever a block is due to end (eoh_r): if it does not end there,
    // the packet's walk is over.
    reg  [N-1:0] below_r;
    wire         eoh_any = eoh_r != 8'd0;
    wire [3:0]   span = hi - lo;        // payload bytes in a block's first beat (lo > 0 only there)
    generate
        for (g = 0; g < N; g = g + 1) begin : bytes
            localparam [15:0] G = g;
            wire [7:0] next_t = lane(s_axis_tdata, G[2:0] - shift);
            if (g < 2) begin : prefix
                assign rec[8*g +: 8] = 8'd0;
            end else begin : body
                wire [7:0] from_t = lane(s_axis_tdata, G[2:0] - idx[2:0]);
                assign rec[8*g +: 8] = below_r[g] ? buf_r[g] : from_t;
            end
            if (g < 8) begin : restart
                wire [7:0] after_end = lane(s_axis_tdata, G[2:0] + e_r + 3'd1);
                always @(posedge clk)
                    if (accept) begin
                        if (eoh_any) buf_r[g] <= after_end;
                        else if (fresh_r || !below_r[g]) buf_r[g] <= next_t;
                    end
                always @(posedge clk)
                    if (rst) below_r[g] <= 1'b0;
                    else if (accept) begin
                        if (s_axis_tlast) below_r[g] <= 1'b0;
                        else if (end_now) below_r[g] <= G[3:0] < rest;
                        else if (adv) below_r[g] <= !fresh_r || G[3:0] < span;
                    end
            end else begin : fill
                always @(posedge clk)
                    if (accept && (fresh_r || !below_r[g])) buf_r[g] <= next_t;
                always @(posedge clk)
                    if (rst) below_r[g] <= 1'b0;
                    else if (accept) begin
                        if (s_axis_tlast || end_now) below_r[g] <= 1'b0;
                        else if (adv) below_r[g] <= !fresh_r && below_r[g-8];
                    end
            end
        end
    endgenerate

    // the packet's verdict, worked out a cycle after its last beat from what that beat left
    reg  [2:0]  tl_user, tl_err;
    reg         tl_open;
    reg  [15:0] tl_blocks, tl_want, tl_want_m1;   // blocks before the last beat's; want, want - 1
    reg         tl_end, tl_r;                     // the last beat completed a block
    wire        tl_miss = tl_end ? tl_blocks != tl_want_m1 : tl_blocks != tl_want;
    wire [2:0] verdict = tl_user != `RSN_OK ? tl_user :
                         tl_err != `RSN_OK ? tl_err :
                         tl_open ? `RSN_MSGLEN :
                         tl_miss ? `RSN_MOLD : `RSN_OK;

    // lock-step: every stage moves when the output may (no valid in the ready path, so the
    // ready is one net from m_axis_tready to every stage's enables, not a chain of gates)
    assign s_axis_tready = m_rec_ready;

    // the type byte is buffered by the beat in which its message ends (a block spans at
    // least 14 bytes), so the type's length and layout are looked up beside the record
    wire [7:0] typ = buf_r[2];
    reg  [`ITCH_TYPES-1:0] kind, fit;
    always @*
        for (k = 0; k < `ITCH_TYPES; k = k + 1) begin
            kind[k] = typ == itch_type(k);
            fit[k] = len == {8'd0, itch_len(itch_type(k))};
        end
    always @(posedge clk)
        if (s_axis_tready) begin
            // the record register loads whenever the stage moves (the last record has left
            // by then): only its valid waits for a block's end
            m_rec_msg <= rec[8*N-1:16];
            m_rec_len <= len;
            m_rec_seq <= seq_eff;
            m_rec_ts <= s_axis_ts;
            m_rec_kind <= kind;
            m_rec_fit <= fit;
        end

    always @(posedge clk) begin
        tl_r <= 1'b0;
        pkt_done <= tl_r;
        if (tl_r) pkt_reason <= verdict;
        if (rst) begin
            tl_r <= 1'b0;
            pkt_done <= 1'b0;
            m_rec_valid <= 1'b0;
            idx <= 7'd0;
            fresh_r <= 1'b1;
            str_r <= 1'b0;
            eoh_r <= 8'd0;
            cnt_on_r <= 1'b0;
            nblk <= 16'd0;
            end_d <= 1'b0;
            shift_r <= 3'd0;
            first_r <= 1'b1;
            bad_r <= 1'b0;
            pkt_reason <= `RSN_OK;
        end else begin
            if (m_rec_ready) m_rec_valid <= 1'b0;
            if (accept) begin
                if (adv && fresh_r) shift_r <= 3'd0 - lo[2:0];
                if (end_now) begin
                    m_rec_valid <= 1'b1;
                    shift_r <= ~e_r;
                    seq_cur <= seq_eff + 64'd1;
                    first_r <= 1'b0;
                end
                idx <= idx_next;
                fresh_r <= fresh_next;
                str_r <= str_next;
                nblk <= nblk_next;
                end_d <= end_now;
                if (adv) begin
                    // the next end: a length just completed and short enough, or the
                    // countdown of a longer one running out
                    eoh_r <= eoh_near | (cnt_one ? lane_r : 8'd0);
                    // (the count runs on past the end: cnt_on_r says when it counts)
                    cnt_r <= lb ? l_sel[15:3] : cnt_r - 13'd1 - {12'd0, dec_r};
                    dec_r <= lb && dec_sel;
                    if (lb) begin
                        e_r <= e_sel;
                        lane_r <= lane_sel;
                        cnt_on_r <= 1'b1;
                        if (short && second) bad_r <= 1'b1;
                    end else if (end_now || cnt_one) begin
                        cnt_on_r <= 1'b0;
                    end
                end
                if (s_axis_tlast) begin
                    tl_r <= 1'b1;
                    tl_user <= s_axis_tuser;
                    tl_err <= bad_r ? `RSN_MSGLEN : `RSN_OK;
                    tl_open <= !fresh_next;
                    tl_blocks <= nblk_next;
                    tl_end <= end_now;
                    tl_want <= want_blocks;
                    tl_want_m1 <= want_m1;
                    idx <= 7'd0;
                    fresh_r <= 1'b1;
                    str_r <= 1'b0;
                    eoh_r <= 8'd0;
                    cnt_on_r <= 1'b0;
                    nblk <= 16'd0;
                    end_d <= 1'b0;
                    shift_r <= 3'd0;
                    first_r <= 1'b1;
                    bad_r <= 1'b0;
                end
            end
        end
    end
endmodule
`default_nettype wire
