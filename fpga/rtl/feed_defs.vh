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
