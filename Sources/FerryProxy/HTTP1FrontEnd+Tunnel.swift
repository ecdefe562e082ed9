import FerryConfig
import Logging
import NIOCore
import NIOHTTP1

/// The WebSocket tunnel on an HTTP/1 connection: the backend's 101 goes to the client, then the
/// HTTP codecs leave both pipelines and a `GlueHandler` pair relays bytes as they are.
extension HTTP1FrontEnd {
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

        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        let loopState = loop
        var closedOnce = false
        let tunnelKey = ObjectIdentifier(clientGlue)
        let idle = TunnelIdleTimer(
            timeout: loop.configuration.limits.websocketIdleTimeout.timeAmount, client: context.channel,
            upstream: upstream)
        loopState.tunnelChannels[tunnelKey] = TunnelChannels(
            backend: tunnel.backend, server: tunnel.server, client: context.channel, upstream: upstream,
            clientGlue: clientGlue, upstreamGlue: upstreamGlue, idle: idle)
        let tunnelClosed = {
            guard !closedOnce else { return }
            closedOnce = true
            loopState.tunnelChannels.removeValue(forKey: tunnelKey)
            tunnel.closed()
        }
        clientGlue.onClose = tunnelClosed
        upstreamGlue.onClose = tunnelClosed
        clientGlue.onActivity = { idle.touch() }
        upstreamGlue.onActivity = { idle.touch() }
        do {
            // Order matters: the glue must be in place before the upstream decoder is removed,
            // because removing it hands its leftover bytes (a server's greeting) to the next handler.
            let client = context.pipeline.syncOperations
            try client.addHandler(clientGlue)
            let upstreamPipeline = upstream.pipeline.syncOperations
            try upstreamPipeline.addHandler(upstreamGlue)
            _ = upstreamPipeline.removeHandler(name: "tunnel-upgrade")
            _ = upstreamPipeline.removeHandler(name: "tunnel-encoder")
            _ = upstreamPipeline.removeHandler(name: "tunnel-decoder")
            _ = client.removeHandler(self)
        } catch {
            loop.logger.error("could not set up the WebSocket tunnel", metadata: ["error": "\(error)"])
            upstream.close(promise: nil)
            context.close(promise: nil)
            return
        }
        context.channel.setOption(.autoRead, value: true).whenComplete { _ in }
        context.channel.read()
        upstream.read()
        // Removing the upstream decoder hands its leftover bytes (a server's greeting sent with its
        // 101) to the glue from a task of its own, with
        // no read-complete event after them: nothing flushed them, and a peer waiting for that very
        // message waited for ever. A client FIN read together with the request reached this
        // handler, not the glue, and was lost the same way (the tunnel stayed open, the client's
        // socket in CLOSE_WAIT). This task runs after the decoders' (tasks run in order).
        let client = context.channel
        let clientFinished = clientInputClosed
        // A client's first frames, sent with its request, go on as they are, once the upstream
        // decoder (which watches writes) is gone.
        let early = reader.takeRemaining()
        context.eventLoop.execute {
            if let early { clientGlue.deliverEarly(early) }
            upstream.flush()
            client.flush()
            if clientFinished { client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        }
    }
}
