import NIOCore

/// Relays bytes between a client channel and its upstream channel once a WebSocket upgrade has
/// been accepted: byte-transparent (frames are not touched), with backpressure (a side reads only
/// while its partner is writable) and half-close passed through.
final class GlueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Frames read on this side (and forwarded to the partner).
    private var frames = WebSocketFrameTracker()
    /// A frame to send to the partner at the next boundary, after which forwarding stops.
    private var pendingInjection: ByteBuffer?
    private var injected = false
    /// A close frame was written to this side's peer (drain). From then on a close of the other
    /// side only half-closes this one and reads go on: closing with the peer's close reply unread
    /// makes the kernel send a reset, which can discard the close frame before the peer reads it
    /// (a WebSocket then ends without a close code). `TunnelCloser` closes both a second later.
    private var closeFrameSent = false
    /// Called on any traffic, for the tunnel's idle timeout.
    var onActivity: (() -> Void)?
    var onClose: (() -> Void)?

    static func matchedPair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerCloseOutput() {
        context?.close(mode: .output, promise: nil)
    }

    private func partnerClose() {
        context?.close(mode: closeFrameSent ? .output : .all, promise: nil)
    }

    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onActivity?()
        var buffer = unwrapInboundIn(data)
        guard !injected else { return }
        let boundary = frames.firstBoundary(in: buffer)
        if let injection = pendingInjection, let cut = boundary {
            // Forward up to the end of the current frame, then the close frame, then nothing more.
            if let head = buffer.readSlice(length: cut) { partner?.partnerWrite(head) }
            inject(injection)
            return
        }
        partner?.partnerWrite(buffer)
    }

    /// Sends `frame` to the partner between two frames of this direction: now if the stream is at
    /// a boundary, else as soon as the frame in flight has been forwarded.
    /// Bytes this side sent before the tunnel was in place (a client's first frames, sent with its
    /// upgrade request), relayed as if just read, and flushed.
    func deliverEarly(_ buffer: ByteBuffer) {
        guard let context else { return }
        channelRead(context: context, data: wrapInboundOut(buffer))
        partner?.partnerFlush()
    }

    func injectAtBoundary(_ frame: ByteBuffer) {
        guard !injected else { return }
        if frames.atBoundary {
            inject(frame)
        } else {
            pendingInjection = frame
        }
    }

    private func inject(_ frame: ByteBuffer) {
        injected = true
        pendingInjection = nil
        partner?.closeFrameSent = true
        partner?.partnerWrite(frame)
        partner?.partnerFlush()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose?()
        // What this side read last (in the read burst that ended with a reset) is written out
        // before the partner closes: a full close drops writes not yet flushed.
        partner?.partnerFlush()
        partner?.partnerClose()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // Half-close: the peer will send nothing more; tell the other side the same (NIO
            // shuts the output down once the writes queued before it, flushed or not, are out).
            partner?.partnerCloseOutput()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if closeFrameSent {
            context.read()  // the peer's last bytes are read (and dropped), see `closeFrameSent`
        } else if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

@available(*, unavailable)
extension GlueHandler: Sendable {}
