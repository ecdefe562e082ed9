import FerryConfig
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// One HTTP/2 CONNECT stream (a WebSocket over HTTP/2, RFC 8441, or a plain CONNECT to refuse): its
/// request becomes an `Exchange`, driven through the same `ExchangeFrontEnd` interface as an
/// HTTP/1 request, and an accepted WebSocket is spliced to its backend as the stream's bytes.
/// Other requests are `HTTP2RequestStream`s, without a channel.
///
/// It sits on the stream's child channel (swift-nio-http2's `HTTP2StreamMultiplexer`, behind
/// `HTTP2Connection`), at the frame-payload level, so that pseudo-headers such as `:protocol` stay
/// readable. Backpressure both ways is the child channel's: a paused request body stops reading
/// the stream, which stops its WINDOW_UPDATEs; a response written faster than the client's window
/// allows makes the child channel unwritable, which pauses the backend
/// (`Exchange.clientWritabilityChanged`).
final class HTTP2StreamFrontEnd: ChannelDuplexHandler, RemovableChannelHandler, ExchangeFrontEnd, HTTP2ResponseWriter,
    HTTP2StreamDeadlines
{
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let connection: HTTP2Connection
    private var loop: ProxyLoopState { connection.loop }
    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    /// The request's HEADERS came; later HEADERS are trailers.
    private var headersReceived = false
    /// The response's END_STREAM went out (or the stream was reset).
    private var responseEnded = false
    /// The client's END_STREAM came.
    private var requestEnded = false
    /// The response has no body whatever the backend sends (HEAD, 204, 304).
    var responseBodyless = false
    /// When the backend's response must have started (`setResponseDeadline`), checked by the
    /// loop's sweep through the connection (no scheduled task per request).
    private(set) var responseDeadline: NIODeadline?
    private var sendTimeoutTask: Scheduled<Void>?
    /// An extended CONNECT's DATA that came before the tunnel was in place (the client's first
    /// WebSocket frames): relayed first once it is.
    private var earlyTunnelBytes: ByteBuffer?
    private(set) var isExtendedConnect = false
    private var readsPaused = false

    init(connection: HTTP2Connection) {
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        clearResponseDeadline()
        sendTimeoutTask?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        clearResponseDeadline()
        sendTimeoutTask?.cancel()
        sendTimeoutTask = nil
        // A reset by the client, or the connection going away: nobody reads the response.
        exchange?.clientGone()
        exchange = nil
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        exchange?.clientWritabilityChanged(writable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    /// DATA frames written and not yet sent: they wait for the client's flow-control window.
    private var dataWaiting = 0
    private var lastProgress = NIODeadline.now()

    /// A response that makes no progress for `[http2] send_timeout` because the client keeps its
    /// flow-control window shut (it stopped reading, or never opens it: a zero-window stall) is
    /// reset, and its backend connection closed. As nginx's `send_timeout`: the time between two
    /// frames going out, not the whole response's.
    private func trackData(_ promise: EventLoopPromise<Void>, context: ChannelHandlerContext) {
        dataWaiting += 1
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in
            let frontEnd = bound.value
            frontEnd.dataWaiting -= 1
            frontEnd.lastProgress = .now()
        }
        guard sendTimeoutTask == nil else { return }
        lastProgress = .now()
        scheduleSendTimeout(in: loop.configuration.http2.sendTimeout.timeAmount, context: context)
    }

    private func scheduleSendTimeout(in delay: TimeAmount, context: ChannelHandlerContext) {
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        sendTimeoutTask = context.eventLoop.scheduleTask(in: delay) {
            let frontEnd = bound.value
            frontEnd.sendTimeoutTask = nil
            guard frontEnd.dataWaiting > 0, let context = frontEnd.context else { return }
            let timeout = frontEnd.loop.configuration.http2.sendTimeout.timeAmount
            let stalled = NIODeadline.now() - frontEnd.lastProgress
            if stalled < timeout {
                frontEnd.scheduleSendTimeout(in: timeout - stalled, context: context)
                return
            }
            frontEnd.loop.http2Refused["zero_window", default: 0] += 1
            frontEnd.responseEnded = true
            context.writeAndFlush(frontEnd.wrapOutboundOut(.rstStream(.cancel)), promise: nil)
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if headers.endStream { requestEnded = true }
            if headersReceived {
                // Trailers end the request; they are not forwarded (the backend's body is chunked
                // without trailers).
                if headers.endStream { exchange?.receivedEnd() }
                return
            }
            headersReceived = true
            start(headers.headers, endStream: headers.endStream, context: context)
        case .data(let data):
            if data.endStream { requestEnded = true }
            if case .byteBuffer(var buffer) = data.data, buffer.readableBytes > 0 {
                if isExtendedConnect {
                    if earlyTunnelBytes == nil {
                        earlyTunnelBytes = buffer
                    } else {
                        earlyTunnelBytes!.writeBuffer(&buffer)
                    }
                } else {
                    exchange?.receivedBody(buffer)
                }
            }
            if data.endStream { exchange?.receivedEnd() }
        default:
            break
        }
    }

    private func start(_ block: HPACKHeaders, endStream: Bool, context: ChannelHandlerContext) {
        guard let current = makeExchange(block, endStream: endStream, connection: connection) else {
            endRequestEarly()
            context.flush()
            return
        }
        exchange = current
        isExtendedConnect = current.request.extendedConnectProtocol != nil
        if current.refuseIfInvalid() { return }
        current.start()
        if endStream { exchange?.receivedEnd() }
    }

    // MARK: - Writing

    func writeHeaders(_ headers: HPACKHeaders, endStream: Bool) {
        guard let context, !responseEnded else { return }
        if endStream { responseEnded = true }
        context.write(
            wrapOutboundOut(.headers(.init(headers: headers, endStream: endStream))), promise: nil)
    }

    func writeData(_ buffer: ByteBuffer, endStream: Bool) {
        guard let context, !responseEnded else { return }
        if endStream { responseEnded = true }
        // The send timeout follows the writes that can wait for the window: the response's end,
        // and whatever is written while the stream is already unwritable (a promise per DATA
        // frame would cost two allocations on every response).
        var written: EventLoopPromise<Void>?
        if endStream || !context.channel.isWritable {
            written = context.eventLoop.makePromise(of: Void.self)
            trackData(written!, context: context)
        }
        context.write(
            wrapOutboundOut(.data(.init(data: .byteBuffer(buffer), endStream: endStream))), promise: written)
    }

    func flushResponse() {
        context?.flush()
    }

    func exchangeFinished(_ exchange: Exchange) {
        self.exchange = nil
        clearResponseDeadline()
        if !responseEnded { writeData(ByteBuffer(), endStream: true) }
        endRequestEarly()
        context?.flush()
    }

    /// The response is complete but the client is still sending its body (an early answer: an
    /// error, a refusal): RST_STREAM with NO_ERROR tells it to stop (RFC 9113 §8.1) and the stream
    /// closes; its remaining DATA is not read.
    private func endRequestEarly() {
        guard !requestEnded, let context else { return }
        requestEnded = true
        context.write(wrapOutboundOut(.rstStream(.noError)), promise: nil)
    }

    func abortResponse() {
        exchange = nil
        guard let context, !responseEnded else { return }
        responseEnded = true
        context.writeAndFlush(wrapOutboundOut(.rstStream(.internalError)), promise: nil)
    }

    func setRequestBodyPaused(_ paused: Bool) {
        guard paused != readsPaused, let context else { return }
        readsPaused = paused
        context.channel.setOption(.autoRead, value: !paused).whenComplete { _ in }
        // A stream channel does not read again by itself when autoRead comes back on.
        if !paused { context.read() }
    }

    func setResponseDeadline(_ duration: Duration?) {
        guard let duration else {
            clearResponseDeadline()
            return
        }
        responseDeadline = .now() + duration.timeAmount
        connection.watchDeadline(of: self)
    }

    private func clearResponseDeadline() {
        guard responseDeadline != nil else { return }
        responseDeadline = nil
        connection.unwatchDeadline(of: self)
    }

    var streamDeadline: NIODeadline? { responseDeadline }

    /// Called by the connection's sweep once `responseDeadline` has passed.
    func streamDeadlinePassed(now: NIODeadline) {
        responseDeadline = nil
        connection.unwatchDeadline(of: self)
        exchange?.responseDeadlinePassed()
    }

    /// The backend accepted the WebSocket (its 101): the stream gets 200 (RFC 8441 §5) with the
    /// backend's subprotocol and extensions, then carries the tunnel's bytes as DATA.
    func startTunnel(response: HTTPResponseHead, upstream: any Channel, tunnel: TunnelRecord) {
        guard let context, !responseEnded else {
            upstream.close(promise: nil)
            tunnel.closed()
            return
        }
        exchange = nil
        clearResponseDeadline()
        var headers: HPACKHeaders = [":status": "200"]
        for (name, value) in response.headers
        where RequestRules.nameEquals(name, "sec-websocket-protocol")
            || RequestRules.nameEquals(name, "sec-websocket-extensions")
        {
            headers.add(name: name.lowercased(), value: value)
        }
        headers.add(name: "server", value: "ferry")
        context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
        let early = earlyTunnelBytes
        earlyTunnelBytes = nil
        loop.http2Tunnels += 1
        connection.tunnels += 1
        let connection = self.connection
        let record = TunnelRecord(
            backend: tunnel.backend, server: tunnel.server, routeIndex: tunnel.routeIndex,
            routeVersion: tunnel.routeVersion, routePath: tunnel.routePath,
            closed: {
                connection.tunnels -= 1
                tunnel.closed()
            })
        TunnelSplice.splice(
            client: context, leaving: self, adapter: HTTP2StreamBytesHandler(), upstream: upstream, tunnel: record,
            loop: loop, early: early, clientFinished: requestEnded)
    }
}

@available(*, unavailable)
extension HTTP2StreamFrontEnd: Sendable {}
