import FerryConfig
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 client connection, after ALPN chose `h2`: swift-nio-http2's `NIOHTTP2Handler`
/// (framing, HPACK, flow control, the stream state machines and its DoS limits), then this handler,
/// which drives each request stream as an `HTTP2RequestStream` from the connection's frames, and
/// behind it an `HTTP2StreamMultiplexer` that gives CONNECT streams (WebSockets over HTTP/2) a
/// child channel with an `HTTP2StreamFrontEnd`. This handler also holds what is the connection's:
/// its place in the loop (drain, stop, the idle deadline), its open streams, and GOAWAY.
final class HTTP2Connection: ChannelDuplexHandler, ClientConnection {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    let loop: ProxyLoopState
    let clientInfo: ClientInfo
    private var context: ChannelHandlerContext?
    private var openStreams = 0
    /// The request streams this handler drives.
    private var streams: [HTTP2StreamID: HTTP2RequestStream] = [:]
    /// The CONNECT streams, whose frames go on to the multiplexer's child channels.
    private var channelStreams: Set<HTTP2StreamID> = []
    /// The highest stream the client opened: the GOAWAY of a drain names it.
    private var lastStreamID = HTTP2StreamID(0)
    private var goAwaySent = false
    /// A limit was hit: the connection is closing (`closeAfterGoAway`).
    private var closing = false
    /// WebSockets open on this connection's streams (RFC 8441).
    var tunnels = 0
    /// Without open streams: when the idle timeout closes the connection.
    private var idleDeadline: NIODeadline?
    /// CONNECT streams' front ends with a response deadline armed (request streams are looked
    /// at directly: registering each request's deadline cost more than the sweep's walk).
    private var waitingStreams: [ObjectIdentifier: any HTTP2StreamDeadlines] = [:]

    /// The earliest of the idle deadline and the streams' deadlines (the loop's sweep).
    var deadline: NIODeadline? {
        var earliest = idleDeadline
        for stream in waitingStreams.values {
            if let due = stream.streamDeadline, earliest.map({ due < $0 }) ?? true { earliest = due }
        }
        for stream in streams.values {
            if let due = stream.streamDeadline, earliest.map({ due < $0 }) ?? true { earliest = due }
        }
        return earliest
    }

    func watchDeadline(of stream: any HTTP2StreamDeadlines) {
        waitingStreams[ObjectIdentifier(stream)] = stream
    }

    func unwatchDeadline(of stream: any HTTP2StreamDeadlines) {
        waitingStreams.removeValue(forKey: ObjectIdentifier(stream))
    }

    init(loop: ProxyLoopState, clientInfo: ClientInfo) {
        self.loop = loop
        self.clientInfo = clientInfo
    }

    /// Puts HTTP/2 on `channel`, after the handler of `context` (which then leaves the pipeline).
    static func install(
        after context: ChannelHandlerContext, loop: ProxyLoopState, clientInfo: ClientInfo
    ) throws {
        let connection = HTTP2Connection(loop: loop, clientInfo: clientInfo)
        let bound = NIOLoopBound(connection, eventLoop: context.eventLoop)
        let http2 = loop.configuration.http2
        var settings = NIOHTTP2Handler.ConnectionConfiguration()
        settings.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: http2.maxConcurrentStreams),
            HTTP2Setting(parameter: .headerTableSize, value: http2.headerTableSize),
            HTTP2Setting(parameter: .maxHeaderListSize, value: loop.configuration.limits.maxHeaderBytes),
            // WebSockets over HTTP/2 (RFC 8441): Chromium then opens wss:// on this connection.
            HTTP2Setting(parameter: .enableConnectProtocol, value: 1),
        ]
        // Ferry checks the blocks clients send itself (`HTTP2HeaderValidation`, in `channelRead`);
        // what it sends is built from heads its parser checked. Content-Length stays checked here.
        settings.headerBlockValidation = .disabled
        settings.maximumSequentialContinuationFrames = http2.maxContinuationFrames
        settings.controlFrameRateLimit.maximumCount = http2.maxControlFrames
        settings.controlFrameRateLimit.windowLength = http2.controlFrameWindow.timeAmount
        var streams = NIOHTTP2Handler.StreamConfiguration()
        streams.streamResetFrameRateLimit.maximumCount = http2.maxResets
        streams.streamResetFrameRateLimit.windowLength = http2.resetWindow.timeAmount
        let pipeline = context.pipeline.syncOperations
        try pipeline.addHandler(HTTP2FlushCoalescer())
        try pipeline.addHandler(
            NIOHTTP2Handler(mode: .server, connectionConfiguration: settings, streamConfiguration: streams))
        try pipeline.addHandler(connection)
        // The multiplexer also keeps the connection's receive window open (a WINDOW_UPDATE on
        // stream 0 as DATA arrives on any stream), as it did when every stream had a channel.
        try pipeline.addHandler(
            HTTP2StreamMultiplexer(
                mode: .server, channel: context.channel, targetWindowSize: streams.targetWindowSize,
                outboundBufferSizeHighWatermark: streams.outboundBufferSizeHighWatermark,
                outboundBufferSizeLowWatermark: streams.outboundBufferSizeLowWatermark
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(HTTP2StreamFrontEnd(connection: bound.value))
                }
            })
    }

    var limits: LimitSettings { loop.configuration.limits }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loop.connections[ObjectIdentifier(self)] = self
        loop.connectionsOpen += 1
        loop.http2Connections += 1
        idleDeadline = .now() + limits.idleTimeout.timeAmount
        if loop.draining { drain() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleDeadline = nil
        waitingStreams = [:]
        closeRequestStreams()
        if loop.connections.removeValue(forKey: ObjectIdentifier(self)) != nil { loop.connectionsOpen -= 1 }
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeRequestStreams()
        context.fireChannelInactive()
    }

    private func closeRequestStreams() {
        let open = streams.values
        streams = [:]
        for stream in open { stream.streamClosed(reset: true) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        let stream = streams[id]
        if stream != nil || channelStreams.contains(id) {
            // An open stream: later HEADERS are its trailers.
            if case .headers(let trailers) = frame.payload, refuseIfMalformed(trailers.headers, as: .trailers, id) {
                return
            }
            if let stream { stream.received(frame.payload) } else { context.fireChannelRead(data) }
        } else if id == .rootStream {
            context.fireChannelRead(data)
        } else if case .headers(let headers) = frame.payload {
            // A new stream (swift-nio-http2 delivers no frame of a stream it refused or closed).
            if refuseIfMalformed(headers.headers, as: .request, id) { return }
            if headers.headers.first(name: ":method") == "CONNECT" {
                channelStreams.insert(id)
                context.fireChannelRead(data)
            } else {
                let stream = HTTP2RequestStream(id: id, connection: self)
                streams[id] = stream
                stream.received(frame.payload)
            }
        }
        // Anything else names a stream that is over (a late WINDOW_UPDATE, PRIORITY): dropped.
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The events of request streams stop here; the multiplexer gets the connection's (its
        // receive window) and those of the CONNECT streams' channels. Most frequent first: every
        // DATA frame and every stream's end changes a window.
        // The dynamic type is compared first: a cast that fails costs more than one that succeeds.
        let type = Swift.type(of: event)
        if type == NIOHTTP2WindowUpdatedEvent.self {
            let window = event as! NIOHTTP2WindowUpdatedEvent
            if let stream = streams[window.streamID] {
                if let size = window.inboundWindowSize { stream.receiveWindowChanged(size) }
                return
            }
        } else if type == StreamClosedEvent.self {
            let closed = event as! StreamClosedEvent
            streamClosed()
            if let stream = streams.removeValue(forKey: closed.streamID) {
                stream.streamClosed(reset: closed.reason != nil)
                return
            }
            channelStreams.remove(closed.streamID)
        } else if type == NIOHTTP2StreamCreatedEvent.self {
            let created = event as! NIOHTTP2StreamCreatedEvent
            streamCreated(created.streamID)
            if streams[created.streamID] != nil { return }
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client's FIN (the channel allows half-closure for HTTP/1): HTTP/2 has no use
            // for a half-open connection, its streams cannot end without the client's frames.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A malformed block (`HTTP2HeaderValidation`): the stream is reset with PROTOCOL_ERROR and
    /// counted; past `streamErrorLimit` resets in `streamErrorWindow` (swift-nio-http2's own stream
    /// error limit, which resets Ferry sends do not reach: a client provoking resets, as in
    /// "MadeYouReset") the connection ends with GOAWAY ENHANCE_YOUR_CALM.
    private func refuseIfMalformed(_ block: HPACKHeaders, as kind: HTTP2HeaderValidation.Block, _ id: HTTP2StreamID)
        -> Bool
    {
        guard let reason = HTTP2HeaderValidation.check(block, as: kind), let context else { return false }
        loop.http2Refused["malformed", default: 0] += 1
        loop.logger.debug(
            "HTTP/2 error",
            metadata: ["reason": "malformed", "error": "\(reason)", "client": "\(clientInfo.address ?? "-")"])
        context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.protocolError))), promise: nil)
        context.flush()
        let now = NIODeadline.now()
        if now - streamErrorsSince > Self.streamErrorWindow {
            streamErrorsSince = now
            streamErrors = 0
        }
        streamErrors += 1
        if streamErrors > Self.streamErrorLimit && !closing {
            loop.http2Refused["glitches", default: 0] += 1
            loop.logger.info(
                "HTTP/2 connection closed",
                metadata: [
                    "reason": "glitches", "error": "\(streamErrors) malformed requests",
                    "client": "\(clientInfo.address ?? "-")",
                ])
            goAway(.enhanceYourCalm)
            closeAfterGoAway(context: context)
        }
        return true
    }

    private var streamErrors = 0
    private var streamErrorsSince = NIODeadline.now()
    /// swift-nio-http2's defaults for its own stream error limit.
    static let streamErrorLimit = NIOHTTP2Handler.StreamConfiguration().streamErrorRateLimit.maximumCount
    static let streamErrorWindow = NIOHTTP2Handler.StreamConfiguration().streamErrorRateLimit.windowLength

    // MARK: - For the request streams

    func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(frame), promise: promise)
    }

    func flush() {
        context?.flush()
    }

    /// Nil once the connection is gone.
    func makePromise() -> EventLoopPromise<Void>? {
        context?.eventLoop.makePromise()
    }

    private func streamCreated(_ id: HTTP2StreamID) {
        openStreams += 1
        loop.http2StreamsOpen += 1
        if id > lastStreamID { lastStreamID = id }
        idleDeadline = nil
    }

    private func streamClosed() {
        openStreams -= 1
        loop.http2StreamsOpen -= 1
        guard openStreams == 0 else { return }
        if goAwaySent {
            context?.close(promise: nil)
        } else {
            idleDeadline = .now() + limits.idleTimeout.timeAmount
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // swift-nio-http2 reports here every error it answered: with RST_STREAM (a malformed
        // request: the stream ends, the connection goes on) or with GOAWAY (a limit hit, a broken
        // connection). The errors of the limits end the connection here; others are counted, and
        // a client that keeps a broken connection open meets the idle timeout.
        // Once a limit closed the connection, what was already read only repeats it.
        guard !closing else { return }
        let (reason, endsConnection) = Self.refusalReason(error)
        loop.http2Refused[reason, default: 0] += 1
        loop.logger.log(
            level: endsConnection ? .info : .debug, "HTTP/2 \(endsConnection ? "connection closed" : "error")",
            metadata: ["reason": "\(reason)", "error": "\(error)", "client": "\(clientInfo.address ?? "-")"])
        if endsConnection { closeAfterGoAway(context: context) }
        // A stream error may concern a CONNECT stream's channel.
        context.fireErrorCaught(error)
    }

    /// After swift-nio-http2's GOAWAY for a limit: nothing more is read (a flood stops costing
    /// anything), and the connection closes a second later. Closing at once, with the client's
    /// frames still arriving, made the kernel answer them with a reset that discarded the GOAWAY
    /// before the client read it (the client saw a reset, not the reason).
    private func closeAfterGoAway(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        context.channel.setOption(.autoRead, value: false).whenComplete { _ in }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(1)) { bound.value.context?.close(promise: nil) }
    }

    /// The counter an HTTP/2 error goes to, and whether it ends the connection: the limits (each
    /// answered by swift-nio-http2 with GOAWAY ENHANCE_YOUR_CALM), or a malformed request or
    /// frame.
    static func refusalReason(_ error: any Error) -> (String, endsConnection: Bool) {
        switch error {
        case is NIOHTTP2Errors.ExcessiveRSTFrames: ("rapid_reset", true)
        case is NIOHTTP2Errors.ExcessiveContinuationFrames: ("continuation_flood", true)
        case is NIOHTTP2Errors.ExcessiveControlFrames: ("control_frame_flood", true)
        case is NIOHTTP2Errors.ExcessiveEmptyDataFrames: ("empty_data_flood", true)
        case is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering: ("outbound_flood", true)
        case is NIOHTTP2Errors.ExcessiveNumberOfGlitches, is NIOHTTP2Errors.ExcessiveStreamErrors: ("glitches", true)
        case is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock: ("header_list_too_large", true)
        case is NIOHTTP2Errors.MaxStreamsViolation: ("too_many_streams", false)
        default: ("malformed", false)
        }
    }

    /// A request began on one of this connection's streams.
    func requestStarted() {
        loop.http2Requests += 1
    }

    // MARK: - ClientConnection

    func deadlinePassed() {
        let now = NIODeadline.now()
        for stream in waitingStreams.values where (stream.streamDeadline.map { $0 <= now } ?? false) {
            stream.streamDeadlinePassed(now: now)
        }
        for stream in streams.values where (stream.streamDeadline.map { $0 <= now } ?? false) {
            stream.streamDeadlinePassed(now: now)
        }
        guard let idle = idleDeadline, idle <= now else { return }
        idleDeadline = nil
        // Idle for the keep-alive timeout: say so, then close.
        goAway()
        context?.close(promise: nil)
    }

    /// Stop taking streams (GOAWAY names the last one this connection took: a stream the client
    /// opened meanwhile is refused and safe for it to retry elsewhere), finish the open ones, close.
    func drain() {
        goAway()
        if openStreams == 0 { context?.close(promise: nil) }
    }

    func forceClose() {
        guard tunnels > 0, let context else {
            context?.close(promise: nil)
            return
        }
        // A drain's deadline: the WebSockets on this connection get their 1001 close frames
        // (`TunnelCloser`, which closes their streams a second later); the connection closes
        // when its last stream does, or after two seconds whatever happens.
        goAway()
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(2)) { bound.value.context?.close(promise: nil) }
    }

    /// GOAWAY naming the last stream taken. A graceful one (NO_ERROR) goes once; an error one
    /// (a limit) may follow it (RFC 9113 §6.8 allows several).
    private func goAway(_ code: HTTP2ErrorCode = .noError) {
        guard !goAwaySent || code != .noError, let context else { return }
        goAwaySent = true
        context.writeAndFlush(
            wrapOutboundOut(
                HTTP2Frame(
                    streamID: .rootStream,
                    payload: .goAway(lastStreamID: lastStreamID, errorCode: code, opaqueData: nil))),
            promise: nil)
    }
}

@available(*, unavailable)
extension HTTP2Connection: Sendable {}

/// A stream with deadlines the connection's sweep checks (no scheduled task per request).
protocol HTTP2StreamDeadlines: AnyObject {
    /// The earliest of the stream's deadlines, nil when none is armed.
    var streamDeadline: NIODeadline? { get }
    /// Called by the sweep once `streamDeadline` has passed.
    func streamDeadlinePassed(now: NIODeadline)
}
