// ITCH 5.0 message types: the framer matches the type byte (buffered a beat before the
// message ends) against each of the 23 (itch_type), the decoder looks up the wire length and
// the field layout of the match (itch_len, itch_sel): two short paths instead of one long.
`define ITCH_TYPES 23

// type byte of type number k
function [7:0] itch_type(input integer k);
    case (k)
        0: itch_type = "S";   1: itch_type = "R";   2: itch_type = "H";   3: itch_type = "Y";
        4: itch_type = "L";   5: itch_type = "V";   6: itch_type = "W";   7: itch_type = "K";
        8: itch_type = "J";   9: itch_type = "h";  10: itch_type = "A";  11: itch_type = "F";
       12: itch_type = "E";  13: itch_type = "C";  14: itch_type = "X";  15: itch_type = "D";
       16: itch_type = "U";  17: itch_type = "P";  18: itch_type = "Q";  19: itch_type = "B";
       20: itch_type = "I";  21: itch_type = "N";  default: itch_type = "O";
    endcase
endfunction

// wire length of each type; 0 for an unknown type
function [7:0] itch_len(input [7:0] t);
    case (t)
        "S": itch_len = 8'd12;  "R": itch_len = 8'd39;  "H": itch_len = 8'd25;
        "Y": itch_len = 8'd20;  "L": itch_len = 8'd26;  "V": itch_len = 8'd35;
        "W": itch_len = 8'd12;  "K": itch_len = 8'd28;  "J": itch_len = 8'd35;
        "h": itch_len = 8'd21;  "A": itch_len = 8'd36;  "F": itch_len = 8'd40;
        "E": itch_len = 8'd31;  "C": itch_len = 8'd36;  "X": itch_len = 8'd23;
        "D": itch_len = 8'd19;  "U": itch_len = 8'd35;  "P": itch_len = 8'd44;
        "Q": itch_len = 8'd40;  "B": itch_len = 8'd19;  "I": itch_len = 8'd50;
        "N": itch_len = 8'd20;  "O": itch_len = 8'd48;
        default: itch_len = 8'd0;
    endcase
endfunction

// where each normalized field lies in a message of type t: one bit per (field, offset)
`ifndef ITCH_TYPES_SEL
`define ITCH_TYPES_SEL
`define SEL_OREF    0   // order_ref   = BE64 at 11 (A F E C X D U P)
`define SEL_NEWREF  1   // new_ref     = BE64 at 19 (U)
`define SEL_SIDE    2   // side        = byte 19    (A F P)
`define SEL_SH20    3   // shares      = BE32 at 20 (A F P)
`define SEL_SH19    4   //               BE32 at 19 (E C X)
`define SEL_SH27    5   //               BE32 at 27 (U)
`define SEL_SH64    6   //               BE64 at 11 (Q)
`define SEL_PR32    7   // price       = BE32 at 32 (A F C P)
`define SEL_PR31    8   //               BE32 at 31 (U)
`define SEL_PR27    9   //               BE32 at 27 (Q)
`define SEL_MT23   10   // match       = BE64 at 23 (E C)
`define SEL_MT36   11   //               BE64 at 36 (P)
`define SEL_MT31   12   //               BE64 at 31 (Q)
`define SEL_MT11   13   //               BE64 at 11 (B)
`endif
function [13:0] itch_sel(input [7:0] t);
    begin
        itch_sel = 14'd0;
        case (t)
            "A", "F": itch_sel = (14'd1 << `SEL_OREF) | (14'd1 << `SEL_SIDE) | (14'd1 << `SEL_SH20) | (14'd1 << `SEL_PR32);
            "E":      itch_sel = (14'd1 << `SEL_OREF) | (14'd1 << `SEL_SH19) | (14'd1 << `SEL_MT23);
            "C":      itch_sel = (14'd1 << `SEL_OREF) | (14'd1 << `SEL_SH19) | (14'd1 << `SEL_MT23) | (14'd1 << `SEL_PR32);
            "X":      itch_sel = (14'd1 << `SEL_OREF) | (14'd1 << `SEL_SH19);
            "D":      itch_sel = (14'd1 << `SEL_OREF);
            "U":      itch_sel = (14'd1 << `SEL_OREF) | (14'd1 << `SEL_NEWREF) | (14'd1 << `SEL_SH27) | (14'd1 << `SEL_PR31);
            "P":      itch_sel = (14'd1 << `SEL_OREF) | (14'd1 << `SEL_SIDE) | (14'd1 << `SEL_SH20) | (14'd1 << `SEL_PR32) | (14'd1 << `SEL_MT36);
            "Q":      itch_sel = (14'd1 << `SEL_SH64) | (14'd1 << `SEL_PR27) | (14'd1 << `SEL_MT31);
            "B":      itch_sel = (14'd1 << `SEL_MT11);
            default:  ;
        endcase
    end
endfunction
