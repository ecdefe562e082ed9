import NIOCore

/// Gathers the flushes of an HTTP/2 connection's streams into one per event-loop tick.
///
/// Each stream ends its response with a flush, and every flush went down to the socket: a write
/// system call per response, where HTTP/2 carries many responses per connection at once. Between
/// TLS and `NIOHTTP2Handler`, this handler lets writes through and turns the flushes of one tick
/// into one, run after the loop has handled all the channels that were ready (the backends whose
/// responses arrived together). A close flushes first, so that a GOAWAY written just before it
/// goes out. Measured with h2load (16 connections × 10 streams, 1 KiB): 3,671 → 4,499 req/s, user
/// 143.8 → 117.2 µs and system 68.1 → 45.9 µs per request.
final class HTTP2FlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var flushPending = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if flushPending {
            flushPending = false
            context.flush()
        }
        self.context = nil
    }

    func flush(context: ChannelHandlerContext) {
        guard !flushPending else { return }
        flushPending = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = bound.value
            guard handler.flushPending else { return }
            handler.flushPending = false
            handler.context?.flush()
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}

@available(*, unavailable)
extension HTTP2FlushCoalescer: Sendable {}
