// Drop reasons carried on tuser between the layers (0 = good so far) and counted by the top.
// An upstream layer's reason wins: later layers pass it on unchanged (so a frame cut short of
// its IPv4 total length is "truncated" whatever a later layer thought of it).
`define RSN_OK      3'd0
`define RSN_ETH     3'd1   // not IPv4 (EtherType, or a stacked VLAN tag)
`define RSN_IPHDR   3'd2   // IPv4 version/IHL/protocol/fragment/length, or UDP length < 8
`define RSN_CSUM    3'd3   // IPv4 header checksum
`define RSN_FILTER  3'd4   // UDP destination port or multicast group not subscribed
`define RSN_TRUNC   3'd5   // frame shorter than its IPv4 total length or its UDP length
`define RSN_MSGLEN  3'd6   // message block running past the payload, or a length below 12
`define RSN_MOLD    3'd7   // MoldUDP64 header short, or block count differs from the header's

// block_lanes (itch_blocks.vh): for each lane q where a block length's second byte may lie
`define BL_E(q)     (13 * (q) + 0)      // 3 bits: e
`define BL_DEC(q)   (13 * (q) + 3)
`define BL_SHORT(q) (13 * (q) + 4)
`define BL_LANE(q)  (13 * (q) + 5)      // 8 bits: one-hot of e
`define BL_NEAR(q)  (104 + 8 * (q))     // 8 bits, q = 0..3 (from q = 4 on, never)
`define BL_NANY(q)  (136 + (q))         // near != 0, q = 0..3
`define BL_ONE(q)   (140 + (q))         // the count of beats to the end runs out at the next beat
`define BL_W        148
