import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Sits in a listening channel's pipeline and withholds its reads (that is, its accepts) until the
/// master lets the worker accept, while the worker is at capacity, and for a moment after `accept`
/// failed for lack of descriptors.
///
/// Withholding `read()` is how a NIO server channel stops accepting: connections wait in the
/// kernel's backlog instead of being accepted and dropped, and the loop does not spin on a
/// listening socket that stays readable (without this, `EMFILE` makes the loop retry at once,
/// forever). Connections already open are not touched: they keep being served.
final class AcceptGate: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias OutboundIn = any Channel

    /// How long accepting pauses after `accept` failed with EMFILE/ENFILE/ENOBUFS/ENOMEM.
    static let exhaustionBackoff = TimeAmount.milliseconds(250)

    private let onExhausted: (IOError) -> Void
    private var context: ChannelHandlerContext?
    private var paused = false
    /// Held until the master lets this worker accept (no two processes accept on one socket).
    private var held: Bool
    private var readPending = false
    private var backoff: Scheduled<Void>?

    init(held: Bool = false, onExhausted: @escaping (IOError) -> Void) {
        self.held = held
        self.onExhausted = onExhausted
    }

    /// Lets the channel accept (once; pausing at capacity still applies).
    func release() {
        held = false
        readIfAllowed()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        backoff?.cancel()
        self.context = nil
    }

    /// Called by the loop when it reaches capacity (true) or gets back below it (false).
    func setPaused(_ paused: Bool) {
        self.paused = paused
        readIfAllowed()
    }

    func read(context: ChannelHandlerContext) {
        readPending = true
        readIfAllowed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, Self.isExhaustion(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        onExhausted(error)
        guard backoff == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        backoff = context.eventLoop.scheduleTask(in: Self.exhaustionBackoff) {
            let gate = bound.value
            gate.backoff = nil
            gate.readIfAllowed()
        }
    }

    static func isExhaustion(_ code: CInt) -> Bool {
        code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM
    }

    private func readIfAllowed() {
        guard readPending, !paused, !held, backoff == nil, let context else { return }
        readPending = false
        context.read()
    }
}

@available(*, unavailable)
extension AcceptGate: Sendable {}
