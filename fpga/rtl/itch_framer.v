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
    input  wire [7:0]   s_axis_tkeep,   // message-block bytes (contiguous; fewer than 8 only in the last beat), ...
    input  wire [2:0]   s_axis_lo,      // ... the first of them, and whether there are any, all
    input  wire         s_axis_any,     //   meaningful where s_axis_ok (the last two precomputed for timing;
    input  wire         s_axis_any06,   //   any06: some in lanes 0-6)
    input  wire         s_axis_ok,      // s_axis_tuser is RSN_OK
    input  wire [`BL_W-1:0] s_axis_lanes, // block_lanes(s_axis_tdata), registered beside it
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
    output reg  [23:0]  m_rec_digits,   // m_rec_len's two octal digits decoded, for the decoder's
                                        //   zeroing: {len[2:0] > i, len[5:3] == i, len[5:3] > i}
    output reg  [63:0]  m_rec_seq,
    output reg  [95:0]  m_rec_ts,
    output reg  [22:0]  m_rec_kind,     // one-hot: the type among the 23 (itch_types.vh), 0 if unknown
    output reg  [22:0]  m_rec_fit,      // the type is k and m_rec_len is its wire length

    output reg          pkt_done,       // one cycle per packet, with its verdict
    output reg  [2:0]   pkt_reason
);
    `include "itch_types.vh"
    localparam N = 52;                  // a block's bytes in a record: length prefix + 50
    localparam R = N + 7;               // buffered bytes: a block starts at lane 7 at the latest

    reg  [7:0]  raw [0:R-1];            // the block's beats as they came (below)
    reg         z7_r;                   // raw[7] == 0
    reg  [7:0]  cur_r;                  // one-hot: this beat is beat j of the block (0 past 7)
    reg  [2:0]  s0_r;                   // the block's start lane (its length's first byte)
    reg  [15:0] len_r;                  // the block's length, registered where it completes
    reg         fresh_r;                // the next block starts in this beat, at lane lo
    reg         str_r;                  // its length's first byte was lane 7 of the last beat
    reg         eoh_any_r;              // eoh_r != 0
    reg  [7:0]  eoh_r;                  // one-hot: the current block ends at this lane of the next
    reg  [2:0]  e_r;                    //   payload beat (eoh_r) / at lane e_r of its last beat
    reg         cnt_on_r;               // counting down the beats to the block's last one:
    reg  [12:0] cnt_r;                  //   cnt_r - dec_r payload beats still to pass before it,
    reg         dec_r;                  //   loaded from len_r the beat after the length (pend_r),
    reg         pend_r;                 //   when whether it runs out at once is one_r (picked
    reg         one_r;                  //   from block_lanes, not compared on the length)
    reg  [7:0]  lane_r;                 //   one-hot of e_r, for eoh_r when the count runs out
    reg  [15:0] nblk;                   // blocks completed in this packet before the previous beat,
    reg         end_d;                  //   and whether that beat completed one (counted a beat
                                        //   late: end_now stays off the counter's carry chain)
    reg         bad_r;                  // a length below 12 seen: the packet's walk has ended

    genvar g;

    // payload lanes: keep; a block in progress continues at lane 0 (lo is past 0 only in a
    // packet's first payload beat, where no block is in progress). A beat with fewer than 8
    // payload bytes is the datagram's last: what it leaves for the next beat no longer counts.
    wire [2:0]  lo = s_axis_lo;
    wire [7:0]  keep = s_axis_tkeep;
    wire [`BL_W-1:0] bl = s_axis_lanes;
    `define D(i) s_axis_tdata[8*(i) +: 8]
    wire        accept  = s_axis_tvalid && s_axis_tready;
    wire        any     = s_axis_any && s_axis_ok;             // bad tuser: no payload
    wire        adv     = accept && any && !bad_r;
    wire        end_now = accept && s_axis_ok && !bad_r && (eoh_r & keep) != 8'd0;
    wire        more    = (eoh_r[6:0] & keep[7:1]) != 7'd0;    // bytes after the end: the next block starts here
    wire [7:0]  len_hi  = raw[7];                              // where str_r: the length's first byte

    // Where this beat completes a block's length, all from registers: at lane pair p after a
    // block's end (p = e_r + 1) or at the packet's first block (p = lo), or across the beat
    // boundary (str_r: first byte buffered, second in lane 0). The block's last byte then lies
    // need - 1 = L + p - 7 bytes past this beat (L - 8 across the boundary): lane e = (L + p + 1)
    // mod 8 of the beat cnt = L[15:3] - dec later, dec = (L mod 8 + p + 1 < 8): block_lanes
    // (itch_blocks.vh, worked out a stage earlier) for each lane q = p + 1 (q = 0 across
    // the boundary), picked here. (Lane lo, where the packet's first block starts, is the
    // first lane of keep: one LUT per lane from registers, not a compare on lo.)
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
    // a length completes here (psel != 0, with the first lane's test as whether lanes 0-6
    // hold any payload, from the stage before)
    wire        lb = adv && (eoh_r[5:0] != 6'd0 || fresh_r && s_axis_any06 || str_r);

    reg  [15:0] l_sel;                  // the length, its last lane and its countdown
    reg  [2:0]  e_sel;
    reg  [7:0]  lane_sel;               // one-hot of e_sel, decoded per source before the pick
    reg         dec_sel, second;        // second: the length's second byte is a block byte
    reg         one_sel;
    reg         short;                  // the length is below 12 (per source, then picked)
    // the block ends in the very next payload beat: only for lengths 12-15 starting at
    // p <= 2 or across the boundary (block_lanes' near)
    wire        b0_zero = z7_r;
    reg  [7:0]  eoh_near;
    reg         near_any;               // eoh_near != 0 (from block_lanes' near != 0)
    integer p, k, dg;
    always @* begin
        l_sel = str_r ? {len_hi, `D(0)} : 16'd0;
        e_sel = str_r ? bl[`BL_E(0) +: 3] : 3'd0;
        lane_sel = str_r ? bl[`BL_LANE(0) +: 8] : 8'd0;
        dec_sel = str_r;
        one_sel = str_r && b0_zero && bl[`BL_ONE(0)];
        second = str_r && keep[0];
        short = str_r && b0_zero && bl[`BL_SHORT(0)];
        eoh_near = str_r && b0_zero ? bl[`BL_NEAR(0) +: 8] : 8'd0;
        near_any = str_r && b0_zero && bl[`BL_NANY(0)];
        for (p = 0; p < 7; p = p + 1)
            if (psel[p]) begin
                l_sel = l_sel | {`D(p), `D(p+1)};
                e_sel = e_sel | bl[`BL_E(p+1) +: 3];
                lane_sel = lane_sel | bl[`BL_LANE(p+1) +: 8];
                dec_sel = dec_sel | bl[`BL_DEC(p+1)];
                one_sel = one_sel | bl[`BL_ONE(p+1)];
                second = second | keep[p+1];
                short = short | bl[`BL_SHORT(p+1)];
                if (p < 3) begin
                    eoh_near = eoh_near | bl[`BL_NEAR(p+1) +: 8];
                    near_any = near_any | bl[`BL_NANY(p+1)];
                end
            end
    end
    `undef D
    wire        cnt_one = cnt_on_r && (pend_r ? one_r : cnt_r == 13'd1);

    wire [15:0] nblk_next = nblk + {15'd0, end_d};
    // the block ending here is the packet's (nblk + end_d)-th: its sequence number is one
    // addition from registers (end_d as the carry in), not a register kept on end_now
    /* verilator lint_off UNUSEDSIGNAL */
    wire [64:0] seq_sum = {s_axis_seq, 1'b1} + {48'd0, nblk, end_d};   // bit 0: the carry in
    /* verilator lint_on UNUSEDSIGNAL */
    wire [15:0] want_blocks = s_axis_count == 16'hFFFF ? 16'd0 : s_axis_count;
    wire [15:0] want_m1 = s_axis_count == 16'hFFFF ? 16'hFFFF : s_axis_count - 16'd1;
    // after an end at lane e the next length's first byte is lane e + 1: fresh where none
    // follows; across the boundary where it is lane 7, and so for a packet's first block
    wire        fresh_next = end_now ? !more : adv ? 1'b0 : fresh_r;
    wire        str_next = end_now ? eoh_r[6] && keep[7] : adv ? fresh_r && keep[7] && !keep[6] : str_r;

    // The buffer holds the beats of the current block as they came, unaligned: beat j of
    // the block (the one where it starts is beat 0) lands in bytes 8j..8j+7, so a beat is
    // written without picking lanes (one enable per beat, cur_r). The block's bytes start
    // at byte s0_r (its start lane), and the record is picked out once, when it leaves: its
    // byte g is raw byte g + s0_r, from this beat where that is the beat in progress. The
    // pick's select is a register set where the block starts (no arithmetic before the
    // muxes), and no write depends on where a block starts or ends.
    wire        eoh_any = eoh_any_r;
    wire [7:0]  src [0:R-1];            // raw bytes as of this beat
    // a byte's digits, for the type match: its high digit 4, 5 or 6 (all 23 types' are) and
    // its low digit, one-hot each
    function [18:0] type_digits(input [7:0] b);
        type_digits = {b[7:4] == 4'd6, b[7:4] == 4'd5, b[7:4] == 4'd4, 16'd1 << b[3:0]};
    endfunction
    reg  [18:0] td [0:7];               // type_digits(raw[q + 2])
    generate
        for (g = 0; g < R; g = g + 1) begin : beats
            assign src[g] = cur_r[g / 8] ? s_axis_tdata[8 * (g % 8) +: 8] : raw[g];
            // bytes 0-7 are rewritten wherever a block is due to end (eoh_r): the next one
            // starts in that beat (if it does not end there, the packet's walk is over)
            wire we = accept && (cur_r[g / 8] || g < 8 && eoh_any);
            always @(posedge clk)
                if (we) raw[g] <= s_axis_tdata[8 * (g % 8) +: 8];
            if (g == 7) begin : zero
                always @(posedge clk)
                    if (we) z7_r <= s_axis_tdata[63:56] == 8'd0;
            end
            // where the type byte may lie (s0_r + 2), the byte is also kept half decoded
            if (g >= 2 && g < 10) begin : type_byte
                always @(posedge clk)
                    if (we) td[g - 2] <= type_digits(s_axis_tdata[8 * (g % 8) +: 8]);
            end
        end
    endgenerate
    // The start lane drives 400 eight-way muxes and the type pick. yosys merges these copies
    // (one per four bytes of the record) into one register, so the muxes get a copy of their
    // own and s0_r keeps the type pick; thirteen real copies (keep on their processes) cost
    // more LUTs and Fmax than they saved, and one register for all lost too (fpga/README.md,
    // round four). Loaded where a block is due to end, eoh_r, rather than where it does: if
    // it does not, the packet's walk is over.
    wire        s0_load = accept && (eoh_any || adv && fresh_r);
    wire [2:0]  s0_next = eoh_any ? e_r + 3'd1 : lo;
    wire [8*N-17:0] rec;                // message byte m: block byte m + 2 (past the length)
    generate
        for (g = 0; g < N - 2; g = g + 1) begin : pick
            if (g % 4 == 0) begin : copy
                (* keep *) reg [2:0] s0_c;
                always @(posedge clk)
                    if (s0_load) s0_c <= s0_next;
            end
            wire [2:0]  sel = pick[g - g % 4].copy.s0_c;
            wire [63:0] at = {src[g + 9], src[g + 8], src[g + 7], src[g + 6],
                              src[g + 5], src[g + 4], src[g + 3], src[g + 2]};
            assign rec[8*g +: 8] = at[8 * sel +: 8];
        end
    endgenerate
    // the packet's verdict, worked out over two cycles after its last beat from what that
    // beat left: the count's comparison and the other reasons, then the two joined
    reg  [2:0]  tl_user, tl_err;
    reg         tl_open;
    reg  [15:0] tl_blocks, tl_want, tl_want_m1;   // blocks before the last beat's; want, want - 1
    reg         tl_end, tl_r, tl_r2;              // the last beat completed a block
    wire        tl_miss = tl_end ? tl_blocks != tl_want_m1 : tl_blocks != tl_want;
    wire [2:0]  tl_first = tl_user != `RSN_OK ? tl_user :
                           tl_err != `RSN_OK ? tl_err :
                           tl_open ? `RSN_MSGLEN : `RSN_OK;
    reg  [2:0]  first_r;                          // tl_first, a cycle later
    reg         miss_r;                           // tl_miss, a cycle later

    // lock-step: every stage moves when the output may (no valid in the ready path, so the
    // ready is one net from m_axis_tready to every stage's enables, not a chain of gates)
    assign s_axis_tready = m_rec_ready;

    // the type byte is buffered by the beat in which its message ends (a block spans at
    // least 14 bytes), so the type's length and layout are looked up beside the record
    // (from the type byte's digits, decoded as it was buffered: a pick and an AND)
    wire [151:0] td_at = {td[7], td[6], td[5], td[4], td[3], td[2], td[1], td[0]};
    wire [18:0] typ = td_at[19 * s0_r +: 19];
    reg  [7:0] t;
    reg  [`ITCH_TYPES-1:0] kind, fit;
    always @*
        for (k = 0; k < `ITCH_TYPES; k = k + 1) begin
            t = itch_type(k);
            kind[k] = typ[{1'b0, t[3:0]}] && (t[7:4] == 4'd4 ? typ[16] : t[7:4] == 4'd5 ? typ[17] : typ[18]);
            fit[k] = kind[k] && len_r == {8'd0, itch_len(itch_type(k))};
        end
    always @(posedge clk)
        if (s_axis_tready) begin
            // the record register loads whenever the stage moves (the last record has left
            // by then): only its valid waits for a block's end
            m_rec_msg <= rec;
            m_rec_len <= len_r;
            for (dg = 0; dg < 8; dg = dg + 1) begin
                m_rec_digits[dg] <= len_r[5:3] > dg[2:0];
                m_rec_digits[8 + dg] <= len_r[5:3] == dg[2:0];
                m_rec_digits[16 + dg] <= len_r[2:0] > dg[2:0];
            end
            m_rec_seq <= seq_sum[64:1];
            m_rec_ts <= s_axis_ts;
            m_rec_kind <= kind;
            m_rec_fit <= fit;
        end

    always @(posedge clk) begin
        tl_r <= 1'b0;
        tl_r2 <= tl_r;
        pkt_done <= tl_r2;
        if (tl_r) begin
            first_r <= tl_first;
            miss_r <= tl_miss;
        end
        if (tl_r2) pkt_reason <= first_r != `RSN_OK ? first_r : miss_r ? `RSN_MOLD : `RSN_OK;
        if (rst) begin
            tl_r <= 1'b0;
            tl_r2 <= 1'b0;
            pkt_done <= 1'b0;
            m_rec_valid <= 1'b0;
            cur_r <= 8'd1;
            fresh_r <= 1'b1;
            str_r <= 1'b0;
            eoh_r <= 8'd0;
            eoh_any_r <= 1'b0;
            cnt_on_r <= 1'b0;
            pend_r <= 1'b0;
            nblk <= 16'd0;
            end_d <= 1'b0;
            bad_r <= 1'b0;
            pkt_reason <= `RSN_OK;
        end else begin
            if (m_rec_ready) m_rec_valid <= 1'b0;
            if (accept) begin
                // the block's beats: the one it starts in is beat 0 (after an end at lane 7,
                // the next beat; as s0_r, from eoh_r)
                if (adv) cur_r <= {cur_r[6:0], 1'b0};
                if (eoh_any) cur_r <= eoh_r[7] ? 8'd1 : 8'd2;
                if (s0_load) s0_r <= s0_next;
                if (end_now) m_rec_valid <= 1'b1;
                fresh_r <= fresh_next;
                str_r <= str_next;
                nblk <= nblk_next;
                end_d <= end_now;
                if (adv) begin
                    // the next end: a length just completed and short enough, or the
                    // countdown of a longer one running out
                    eoh_r <= eoh_near | (cnt_one ? lane_r : 8'd0);
                    eoh_any_r <= near_any || cnt_one;
                    // (the count runs on past the end: cnt_on_r says when it counts; dec_sel
                    // is zero where no length completes)
                    cnt_r <= (pend_r ? len_r[15:3] : cnt_r) - 13'd1 - {12'd0, dec_r};
                    dec_r <= dec_sel;
                    pend_r <= lb;
                    if (lb) begin
                        e_r <= e_sel;
                        len_r <= l_sel;
                        one_r <= one_sel;
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
                    cur_r <= 8'd1;
                    fresh_r <= 1'b1;
                    str_r <= 1'b0;
                    eoh_r <= 8'd0;
                    eoh_any_r <= 1'b0;
                    cnt_on_r <= 1'b0;
                    pend_r <= 1'b0;
                    nblk <= 16'd0;
                    end_d <= 1'b0;
                            bad_r <= 1'b0;
                end
            end
        end
    end
endmodule
`default_nettype wire
