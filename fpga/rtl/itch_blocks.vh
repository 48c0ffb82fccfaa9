// What a beat's bytes say about a MoldUDP64 block length whose second byte lies in lane q
// (its first byte in lane q - 1, or for q = 0 in the beat before). They depend on the beat
// alone, so mold_rx works them out for every lane and registers them beside the beat, and
// the framer only picks the lane where a length completes (itch_framer.v).
//
// For the length L = {first, second} whose second byte is lane q, the block's last byte
// lies L - 1 bytes past the length's first, i.e. in lane e = (second + q) mod 8 of a later
// beat; dec: the count of beats to it is L[15:3] - 1 rather than L[15:3]; short: L < 12
// (for q = 0 given a zero first byte); near[k]: L ends at lane k of the very next beat
// (only lengths 12-15 can; for q = 0 given a zero first byte); one: the count of beats
// L[15:3] - dec runs out after the next beat (for q = 0 given a zero first byte).
// (the layout of its result: BL_* in feed_defs.vh)
function [`BL_W-1:0] block_lanes(input [63:0] d);
    integer bq, bk;
    reg [7:0] first, second;
    reg [2:0] e;
    begin
        block_lanes = {`BL_W{1'b0}};
        for (bq = 0; bq < 8; bq = bq + 1) begin
            second = d[8*bq +: 8];
            first = bq == 0 ? 8'd0 : d[8*bq - 8 +: 8];
            e = second[2:0] + bq[2:0];
            block_lanes[`BL_E(bq) +: 3] = e;
            block_lanes[`BL_DEC(bq)] = {1'b0, second[2:0]} <= 4'd7 - bq[3:0];
            block_lanes[`BL_SHORT(bq)] = first == 8'd0 && second < 8'd12;
            block_lanes[`BL_ONE(bq)] = first == 8'd0 && second[7:3] == (block_lanes[`BL_DEC(bq)] ? 5'd2 : 5'd1);
            block_lanes[`BL_LANE(bq) +: 8] = 8'd1 << e;
            if (bq < 4)
                for (bk = bq + 4; bk < 8; bk = bk + 1)
                    block_lanes[`BL_NEAR(bq) + bk] = first == 8'd0 && second == 8'd8 + bk[7:0] - bq[7:0];
            if (bq < 4)
                block_lanes[`BL_NANY(bq)] = block_lanes[`BL_NEAR(bq) +: 8] != 8'd0;
        end
    end
endfunction
