`timescale 1ns / 1ps
`default_nettype none
// ITCH 5.0 decoder: checks a raw message against its type's length (all 23 types) and
// lays it out as one 128-byte normalized record (1024 bits, byte k at [8k+7:8k], integers
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
    input  wire [15:0]   s_rec_len,
    input  wire [63:0]   s_rec_seq,
    input  wire [95:0]   s_rec_ts,

    output reg  [1023:0] m_axis_tdata,
    output reg           m_axis_tvalid,
    input  wire          m_axis_tready,
    output wire          m_axis_tlast,

    output reg  [31:0]   rejects_unknown_type,
    output reg  [31:0]   rejects_length
);
    // message byte k
    `define M(k) s_rec_msg[8*(k) +: 8]

    function [7:0] wire_len(input [7:0] t);
        case (t)
            "S": wire_len = 8'd12;  "R": wire_len = 8'd39;  "H": wire_len = 8'd25;
            "Y": wire_len = 8'd20;  "L": wire_len = 8'd26;  "V": wire_len = 8'd35;
            "W": wire_len = 8'd12;  "K": wire_len = 8'd28;  "J": wire_len = 8'd35;
            "h": wire_len = 8'd21;  "A": wire_len = 8'd36;  "F": wire_len = 8'd40;
            "E": wire_len = 8'd31;  "C": wire_len = 8'd36;  "X": wire_len = 8'd23;
            "D": wire_len = 8'd19;  "U": wire_len = 8'd35;  "P": wire_len = 8'd44;
            "Q": wire_len = 8'd40;  "B": wire_len = 8'd19;  "I": wire_len = 8'd50;
            "N": wire_len = 8'd20;  "O": wire_len = 8'd48;
            default: wire_len = 8'd0;
        endcase
    endfunction

    // big-endian fields at fixed offsets
    `define BE32(k) {`M(k), `M(k+1), `M(k+2), `M(k+3)}
    `define BE64(k) {`BE32(k), `BE32(k+4)}

    wire [7:0] typ = `M(0);
    reg  [63:0] order_ref, new_ref, match, shares;
    reg  [31:0] price;
    reg  [7:0]  side;
    always @* begin
        order_ref = 64'd0; new_ref = 64'd0; match = 64'd0; shares = 64'd0; price = 32'd0; side = 8'd0;
        case (typ)
            "A", "F": begin order_ref = `BE64(11); side = `M(19); shares = {32'd0, `BE32(20)}; price = `BE32(32); end
            "E":      begin order_ref = `BE64(11); shares = {32'd0, `BE32(19)}; match = `BE64(23); end
            "C":      begin order_ref = `BE64(11); shares = {32'd0, `BE32(19)}; match = `BE64(23); price = `BE32(32); end
            "X":      begin order_ref = `BE64(11); shares = {32'd0, `BE32(19)}; end
            "D":      begin order_ref = `BE64(11); end
            "U":      begin order_ref = `BE64(11); new_ref = `BE64(19); shares = {32'd0, `BE32(27)}; price = `BE32(31); end
            "P":      begin order_ref = `BE64(11); side = `M(19); shares = {32'd0, `BE32(20)}; price = `BE32(32); match = `BE64(36); end
            "Q":      begin shares = `BE64(11); price = `BE32(27); match = `BE64(31); end
            "B":      begin match = `BE64(11); end
            default:  ;
        endcase
    end
    `undef BE64
    `undef BE32

    wire [7:0] want  = wire_len(typ);
    wire       known = want != 8'd0;
    wire       fits  = s_rec_len == {8'd0, want};

    assign s_rec_ready = !m_axis_tvalid || m_axis_tready;
    assign m_axis_tlast = 1'b1;

    always @(posedge clk) begin
        if (rst) begin
            m_axis_tvalid <= 1'b0;
            rejects_unknown_type <= 32'd0;
            rejects_length <= 32'd0;
        end else begin
            if (m_axis_tready) m_axis_tvalid <= 1'b0;
            if (s_rec_valid && s_rec_ready) begin
                if (!known) rejects_unknown_type <= rejects_unknown_type + 32'd1;
                else if (!fits) rejects_length <= rejects_length + 32'd1;
                m_axis_tvalid <= known && fits;
            end
        end
        // the record register loads every message (its valid says whether it counts): no
        // type check on the enable of a thousand flip-flops
        if (s_rec_valid && s_rec_ready)
            m_axis_tdata <= {40'd0, s_rec_msg, want, side, typ, {`M(3), `M(4)}, price,
                             shares, match, new_ref, order_ref,
                             16'd0, {`M(5), `M(6), `M(7), `M(8), `M(9), `M(10)},
                             {`M(1), `M(2)}, s_rec_ts[15:0], s_rec_ts[47:16],
                             16'd0, s_rec_ts[95:48], s_rec_seq};
    end
    `undef M
endmodule
`default_nettype wire
