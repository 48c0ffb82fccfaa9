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
    input  wire [3:0]   s_axis_hi,
    input  wire         s_axis_tvalid,
    output wire         s_axis_tready,
    input  wire         s_axis_tlast,
    input  wire [2:0]   s_axis_tuser,
    input  wire [95:0]  s_axis_ts,
    input  wire [63:0]  s_axis_seq,
    input  wire [15:0]  s_axis_count,

    output reg          m_rec_valid,
    input  wire         m_rec_ready,
    output reg  [399:0] m_rec_msg,      // message byte k at [8k+7:8k], zero past the length
    output reg  [15:0]  m_rec_len,
    output reg  [63:0]  m_rec_seq,
    output reg  [95:0]  m_rec_ts,

    output reg          pkt_done,       // one cycle per packet, with its verdict
    output reg  [2:0]   pkt_reason
);
    localparam N = 52;                  // buffered block bytes: length prefix + 50

    reg  [7:0]  buf_r [0:N-1];
    reg  [6:0]  idx;                    // bytes of the current block received so far, held at 127
                                        // (past the buffer: the block's end is need_r's to tell)
    reg  [16:0] need_r;                 // bytes the current block still lacks (once idx >= 2)
    reg  [15:0] nblk;                   // blocks completed in this packet
    reg  [63:0] seq_cur;                // sequence number of the next block (nblk > 0)
    reg  [2:0]  err_r;

    genvar g;

    function [7:0] lane(input [63:0] d, input [2:0] i);
        lane = d[i*8 +: 8];
    endfunction

    // payload lanes [lo, hi); a block in progress continues at lane 0
    wire [3:0]  lo = s_axis_lo;
    wire [3:0]  hi = s_axis_hi;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [7:0]  keep_unused = s_axis_tkeep;   // lo and hi say the same, sooner
    /* verilator lint_on UNUSEDSIGNAL */
    wire        any    = hi != 4'd0;
    wire [3:0]  avail  = hi - lo;
    wire        fresh  = idx == 7'd0;
    wire        lknown = idx[6:1] != 6'd0;
    wire [15:0] len    = {buf_r[0], buf_r[1]};
    wire        dead   = s_axis_tuser != `RSN_OK || err_r != `RSN_OK;
    wire        short  = lknown && len < 16'd12;
    wire        end_now = any && !dead && lknown && !short &&
                          need_r[16:4] == 13'd0 && need_r[3:0] <= avail;
    wire [3:0]  n0     = lo + need_r[3:0];                   // next block's first lane
    wire [3:0]  rest   = hi - n0;                            // its bytes in this beat
    wire [7:0]  idx_sum  = {1'b0, idx} + {4'd0, avail};
    wire [6:0]  idx_next = end_now ? {3'd0, rest} :
                           !any || dead ? idx : idx_sum[7] ? 7'd127 : idx_sum[6:0];
    wire [15:0] nblk_next = nblk + {15'd0, end_now};
    wire [63:0] seq_eff = nblk == 16'd0 ? s_axis_seq : seq_cur;
    wire [15:0] want_blocks = s_axis_count == 16'hFFFF ? 16'd0 : s_axis_count;

    // need_r for the next beat where this beat completes a block's length: worked out for
    // a length at each lane pair p in parallel, then picked (p = n0 after a block's end,
    // p = lo when a block's length lies whole in this beat)
    wire [17*7-1:0] need_at;            // [17*p +: 17]
    generate
        for (g = 0; g < 7; g = g + 1) begin : lengths
            localparam [16:0] P = g;
            assign need_at[17*g +: 17] = {1'b0, s_axis_tdata[8*g +: 8], s_axis_tdata[8*g + 8 +: 8]} + 17'd2 + P
                                - {13'd0, hi};
        end
    endgenerate
    wire [16:0] need_1 = {1'b0, buf_r[0], s_axis_tdata[7:0]} + 17'd1 - {13'd0, hi};  // idx 1: lo is 0
    reg  [16:0] need_next;
    always @* begin
        if (end_now)            need_next = need_at[17*n0[2:0] +: 17];
        else if (lknown)        need_next = need_r - {13'd0, avail};
        else if (idx == 7'd1)   need_next = need_1;
        else                    need_next = need_at[17*lo[2:0] +: 17];
    end

    // the finished block (bytes from the buffer, then from this beat) and the new buffer
    /* verilator lint_off UNUSEDSIGNAL */
    wire [8*N-1:0] rec;                 // bytes 0-1 are the length prefix, not part of the record
    /* verilator lint_on UNUSEDSIGNAL */
    generate
        for (g = 0; g < N; g = g + 1) begin : bytes
            localparam [15:0] G = g;
            wire [6:0]  w = G[6:0] - idx;                    // this byte's place after the buffered ones
            wire        here = G[6:0] >= idx && w < {3'd0, avail};
            wire [2:0]  t = fresh ? G[2:0] + lo[2:0] : w[2:0];   // its lane
            wire [4:0]  u = G[4:0] + {1'b0, n0};             // lane of the next block's byte g
            wire [7:0] from_t = lane(s_axis_tdata, t);
            assign rec[8*g +: 8] = G >= len + 16'd2 ? 8'd0 : G[6:0] < idx ? buf_r[g] : from_t;
            always @(posedge clk)
                if (s_axis_tvalid && s_axis_tready && !dead) begin
                    if (end_now) begin
                        if (g < 8 && u < {1'b0, hi}) buf_r[g] <= lane(s_axis_tdata, u[2:0]);
                    end else if (here) begin
                        buf_r[g] <= from_t;
                    end
                end
        end
    endgenerate

    // the packet's verdict, worked out a cycle after its last beat from what that beat left
    reg  [2:0]  tl_user, tl_err;
    reg         tl_short, tl_open;
    reg  [15:0] tl_blocks, tl_want;
    reg         tl_end;
    reg         tl_r;
    wire [2:0] verdict = tl_user != `RSN_OK ? tl_user :
                         tl_err != `RSN_OK ? tl_err :
                         tl_short || tl_open ? `RSN_MSGLEN :
                         tl_blocks + {15'd0, tl_end} != tl_want ? `RSN_MOLD : `RSN_OK;

    assign s_axis_tready = !m_rec_valid || m_rec_ready;
    wire accept = s_axis_tvalid && s_axis_tready;

    always @(posedge clk) begin
        tl_r <= 1'b0;
        pkt_done <= tl_r;
        if (tl_r) pkt_reason <= verdict;
        if (rst) begin
            tl_r <= 1'b0;
            pkt_done <= 1'b0;
            m_rec_valid <= 1'b0;
            idx <= 7'd0;
            need_r <= 17'd0;
            nblk <= 16'd0;
            err_r <= `RSN_OK;
            pkt_reason <= `RSN_OK;
        end else begin
            if (m_rec_ready) m_rec_valid <= 1'b0;
            if (accept) begin
                // the record register loads on every beat taken (the last record has left
                // by then): only its valid waits for a block's end
                m_rec_msg <= rec[8*N-1:16];
                m_rec_len <= len;
                m_rec_seq <= seq_eff;
                m_rec_ts <= s_axis_ts;
                if (end_now) begin
                    m_rec_valid <= 1'b1;
                    seq_cur <= seq_eff + 64'd1;
                end
                idx <= idx_next;
                need_r <= need_next;
                nblk <= nblk_next;
                if (short && !dead) err_r <= `RSN_MSGLEN;
                if (s_axis_tlast) begin
                    tl_r <= 1'b1;
                    tl_user <= s_axis_tuser;
                    tl_err <= err_r;
                    tl_short <= short;
                    tl_open <= idx_next != 7'd0;
                    tl_blocks <= nblk;
                    tl_end <= end_now;
                    tl_want <= want_blocks;
                    idx <= 7'd0;
                    nblk <= 16'd0;
                    err_r <= `RSN_OK;
                end
            end
        end
    end
endmodule
`default_nettype wire
