import FerryConfig
import Logging
import NIOCore

/// Joins a client's side and a backend's connection into a WebSocket tunnel once the backend
/// agreed to the upgrade: a `GlueHandler` pair relays bytes as they are, with backpressure,
/// half-close, the idle timeout and the loop's registry (drain's 1001, `ferry server drain`).
///
/// The client's side is an HTTP/1 connection, or an HTTP/2 stream behind an
/// `HTTP2StreamBytesHandler` (DATA frames in and out as bytes); its front end leaves the pipeline.
enum TunnelSplice {
    static func splice(
        client context: ChannelHandlerContext, leaving frontEnd: any RemovableChannelHandler,
        adapter: (any ChannelHandler)? = nil, upstream: any Channel, tunnel: TunnelRecord, loop: ProxyLoopState,
        early: ByteBuffer? = nil, clientFinished: Bool = false
    ) {
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        var closedOnce = false
        let tunnelKey = ObjectIdentifier(clientGlue)
        let idle = TunnelIdleTimer(
            timeout: loop.configuration.limits.websocketIdleTimeout.timeAmount, client: context.channel,
            upstream: upstream)
        loop.tunnelChannels[tunnelKey] = TunnelChannels(
            backend: tunnel.backend, server: tunnel.server, client: context.channel, upstream: upstream,
            clientGlue: clientGlue, upstreamGlue: upstreamGlue, idle: idle)
        let tunnelClosed = {
            guard !closedOnce else { return }
            closedOnce = true
            loop.tunnelChannels.removeValue(forKey: tunnelKey)
            tunnel.closed()
        }
        clientGlue.onClose = tunnelClosed
        upstreamGlue.onClose = tunnelClosed
        clientGlue.onActivity = { idle.touch() }
        upstreamGlue.onActivity = { idle.touch() }
        let client = context.channel
        let decoderRemoved: EventLoopFuture<Void>
        do {
            // Order matters: the glue must be in place before the upstream decoder is removed,
            // because removing it hands its leftover bytes (a server's greeting) to the next handler.
            let clientPipeline = context.pipeline.syncOperations
            if let adapter { try clientPipeline.addHandler(adapter) }
            try clientPipeline.addHandler(clientGlue)
            let upstreamPipeline = upstream.pipeline.syncOperations
            try upstreamPipeline.addHandler(upstreamGlue)
            _ = upstreamPipeline.removeHandler(name: "tunnel-upgrade")
            _ = upstreamPipeline.removeHandler(name: "tunnel-encoder")
            decoderRemoved = upstreamPipeline.removeHandler(name: "tunnel-decoder")
            _ = clientPipeline.removeHandler(frontEnd)
        } catch {
            loop.logger.error("could not set up the WebSocket tunnel", metadata: ["error": "\(error)"])
            upstream.close(promise: nil)
            context.close(promise: nil)
            return
        }
        // The upstream decoder is being removed from inside its own decoding (the 101 was read
        // there): it leaves the pipeline later, from a task of its own, handing its leftover bytes
        // (a server's greeting sent with its 101) to the glue, with no read-complete event after
        // them. Until then it also watches writes, and the glue must not write through it: the
        // client's side is read, and its first frames (sent with its request) relayed, only once
        // it is gone. Then everything is flushed (nothing else would flush the greeting, and a peer
        // waiting for that very message would wait for ever), and a client FIN read together with
        // the request, which reached the front end rather than the glue, is passed on.
        decoderRemoved.whenComplete { _ in
            client.setOption(.autoRead, value: true).whenComplete { _ in }
            client.read()
            upstream.read()
            if let early { clientGlue.deliverEarly(early) }
            upstream.flush()
            client.flush()
            if clientFinished { client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        }
    }
}
