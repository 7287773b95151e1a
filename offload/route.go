package offload

// RouteProtocol marks the routes and policy rules xdpsec adds
// (rtm_protocol, FRA_PROTOCOL): the xfrm data plane's routes towards the
// peers and the kill switch's blackholes (package killswitch), so that a
// restarted daemon finds its predecessor's and nobody else's. 0x58 is an
// arbitrary value that /etc/iproute2/rt_protos leaves unassigned.
const RouteProtocol = 0x58
