"""Order routing, ETA, circuit breakers, dispatch to DCs and reroute: pure logic over the domain."""
