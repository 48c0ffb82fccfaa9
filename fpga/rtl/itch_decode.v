`timescale 1ns / 1ps
`default_nettype none
// ITCH 5.0 decoder: checks a raw message against its type's length (all 23 types, looked
// up by the framer: itch_types.vh) and lays it out as one 128-byte normalized record (1024 bits, byte k at [8k+7:8k], integers
// little-endian), registered. Unknown types and length mismatches are counted, not emitted
// (the software decoder's "unknown_type" and "length_mismatch" rejects).
//
// Record (byte offset: field):
//   0 seq u64 | 8 ptp_sec u64 (48 bits) | 16 ptp_ns u32 | 20 ptp_frac_ns u16 | 22 stock_locate u16
//  24 timestamp u64 (48 bits, ns since midnight) | 32 order_ref u64 | 40 new_order_ref u64
//  48 match_number u64 | 56 shares u64 | 64 price u32 | 68 tracking_number u16 | 70 type u8
//  71 side u8 | 72 length u8 | 73 message bytes [50] (wire image, zero padded) | 123 zero [5]
// order_ref is the original reference for U; shares is executed/canceled shares for E/C/X
// and the 8-byte cross shares for Q; price is the execution price for C and the cross
// price for Q. Fields a type lacks are zero; every field of every type is in the message bytes.
module itch_decode (
    input  wire          clk,
    input  wire          rst,

    input  wire          s_rec_valid,
    output wire          s_rec_ready,
    input  wire [399:0]  s_rec_msg,
    input  wire [63:0]   s_rec_seq,
    input  wire [95:0]   s_rec_ts,
    input  wire [22:0]   s_rec_kind,      // one-hot: the type among the 23 (itch_types.vh), 0 if unknown
    input  wire [22:0]   s_rec_fit,       // the type is k and the message's length is k's
    input  wire [5:0]    s_rec_len,       // the message's length, mod 64, ...
    input  wire [23:0]   s_rec_digits,    // ... its octal digits decoded: {len[2:0] > i, len[5:3] == i, len[5:3] > i}

    output reg  [1023:0] m_axis_tdata,
    output reg           m_axis_tvalid,
    input  wire          m_axis_tready,
    output wire          m_axis_tlast,

    output reg  [31:0]   rejects_unknown_type,
    output reg  [31:0]   rejects_length
);
    `include "itch_types.vh"
    // message byte k
    `define M(k) s_rec_msg[8*(k) +: 8]
    // big-endian fields at fixed offsets
    `define BE32(k) {`M(k), `M(k+1), `M(k+2), `M(k+3)}
    `define BE64(k) {`BE32(k), `BE32(k+4)}
    // the type's field layout, and whether the message has the type's length
    reg  [13:0] s_rec_sel;
    integer k;
    always @* begin
        s_rec_sel = 14'd0;
        for (k = 0; k < `ITCH_TYPES; k = k + 1)
            if (s_rec_kind[k]) s_rec_sel = s_rec_sel | itch_sel(itch_type(k));
    end
    wire       fits = s_rec_fit != {`ITCH_TYPES{1'b0}};

    // A record leaves only if its length is its type's (at most 50), so the type's length
    // is the message's: the length byte and the zeroing past it come from the length's low
    // six bits (a table per byte) rather than from an OR over the 23 types.
    wire [7:0] want = {2'd0, s_rec_len};

    // the message bytes, zero past the length (the framer leaves them as they fell): byte b
    // is kept where len > b, decided from len's two octal digits, decoded and registered by
    // the framer (synthesis shares a comparison per byte into a ripple of LUTs)
    wire [7:0] hi_gt = s_rec_digits[7:0], hi_eq = s_rec_digits[15:8], lo_gt = s_rec_digits[23:16];
    reg  [399:0] msg;
    integer b;
    always @* begin
        for (b = 0; b < 50; b = b + 1)
            msg[8*b +: 8] = hi_gt[b / 8] || hi_eq[b / 8] && lo_gt[b % 8] ? s_rec_msg[8*b +: 8] : 8'd0;
    end
    `define IF(bit, w, v) ({w{s_rec_sel[bit]}} & (v))

    wire [7:0]  typ       = `M(0);
    wire [63:0] order_ref = `IF(`SEL_OREF, 64, `BE64(11));
    wire [63:0] new_ref   = `IF(`SEL_NEWREF, 64, `BE64(19));
    wire [7:0]  side      = `IF(`SEL_SIDE, 8, `M(19));
    wire [63:0] shares    = `IF(`SEL_SH20, 64, {32'd0, `BE32(20)}) | `IF(`SEL_SH19, 64, {32'd0, `BE32(19)}) |
                            `IF(`SEL_SH27, 64, {32'd0, `BE32(27)}) | `IF(`SEL_SH64, 64, `BE64(11));
    wire [31:0] price     = `IF(`SEL_PR32, 32, `BE32(32)) | `IF(`SEL_PR31, 32, `BE32(31)) | `IF(`SEL_PR27, 32, `BE32(27));
    wire [63:0] match     = `IF(`SEL_MT23, 64, `BE64(23)) | `IF(`SEL_MT36, 64, `BE64(36)) |
                            `IF(`SEL_MT31, 64, `BE64(31)) | `IF(`SEL_MT11, 64, `BE64(11));
    `undef IF
    `undef BE64
    `undef BE32

    wire       known = s_rec_kind != {`ITCH_TYPES{1'b0}};

    assign s_rec_ready = m_axis_tready;
    assign m_axis_tlast = 1'b1;

    // the reject counters count a cycle late, from registered flags (the type and length
    // checks stay off their enables)
    reg unknown_r, misfit_r;
    always @(posedge clk) begin
        if (rst) begin
            m_axis_tvalid <= 1'b0;
            unknown_r <= 1'b0;
            misfit_r <= 1'b0;
            rejects_unknown_type <= 32'd0;
            rejects_length <= 32'd0;
        end else begin
            if (m_axis_tready) m_axis_tvalid <= 1'b0;
            unknown_r <= s_rec_valid && s_rec_ready && !known;
            misfit_r <= s_rec_valid && s_rec_ready && known && !fits;
            if (unknown_r) rejects_unknown_type <= rejects_unknown_type + 32'd1;
            if (misfit_r) rejects_length <= rejects_length + 32'd1;
            if (s_rec_valid && s_rec_ready) m_axis_tvalid <= fits;
        end
        // the record register loads whenever the stage moves (its valid says whether it
        // counts): the enable of a thousand flip-flops is the ready net alone
        if (s_rec_ready)
            m_axis_tdata <= {40'd0, msg, want, side, typ, {`M(3), `M(4)}, price,
                             shares, match, new_ref, order_ref,
                             16'd0, {`M(5), `M(6), `M(7), `M(8), `M(9), `M(10)},
                             {`M(1), `M(2)}, s_rec_ts[15:0], s_rec_ts[47:16],
                             16'd0, s_rec_ts[95:48], s_rec_seq};
    end
    `undef M
endmodule
`default_nettype wire
