import FerryConfig
import Logging
import NIOCore
import NIOHTTP1

/// The WebSocket tunnel on an HTTP/1 connection: the backend's 101 goes to the client, then the
/// HTTP codecs leave both pipelines and a `GlueHandler` pair relays bytes as they are.
extension HTTP1FrontEnd {
    var tunnelStatus: Int { 101 }

    func startTunnel(response: HTTPResponseHead, upstream: any Channel, tunnel: TunnelRecord) {
        guard let context else {
            upstream.close(promise: nil)
            tunnel.closed()
            return
        }
        state = .tunneling
        exchange = nil
        // The 101 keeps Upgrade/Connection/Sec-WebSocket-* as the backend sent them (it has no
        // body: no Content-Length or Transfer-Encoding).
        writePending()
        var out = context.channel.allocator.buffer(capacity: 512)
        out.writeStaticString("HTTP/1.1 101 Switching Protocols\r\n")
        for (name, value) in response.headers
        where !RequestRules.nameEquals(name, "content-length") && !RequestRules.nameEquals(name, "transfer-encoding") {
            ResponseFramer.writeHeader(name, value, into: &out)
        }
        out.writeStaticString("\r\n")
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)

        TunnelSplice.splice(
            client: context, leaving: self, upstream: upstream, tunnel: tunnel, loop: loop,
            early: reader.takeRemaining(), clientFinished: clientInputClosed)
    }
}
