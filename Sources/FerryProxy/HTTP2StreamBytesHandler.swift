import NIOCore
import NIOHTTP2

/// A WebSocket over HTTP/2 (RFC 8441) as bytes: sits on the stream's channel between the
/// multiplexer and the tunnel's `GlueHandler`, so that the glue relays a stream exactly as it
/// relays an HTTP/1 connection. DATA payload in → bytes; END_STREAM in → the input closed (a FIN);
/// bytes out → DATA; closing the output → an empty DATA with END_STREAM (RFC 8441 §4: END_STREAM
/// is the FIN). A full close is the stream channel's own (RST_STREAM CANCEL if still open).
final class HTTP2StreamBytesHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var outputClosed = false
    private var inputClosed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .data(let frame):
            if case .byteBuffer(let buffer) = frame.data, buffer.readableBytes > 0 {
                context.fireChannelRead(wrapInboundOut(buffer))
            }
            if frame.endStream { closeInput(context: context) }
        case .headers(let headers):
            // Trailers: only their END_STREAM means something here.
            if headers.endStream { closeInput(context: context) }
        default:
            break
        }
    }

    private func closeInput(context: ChannelHandlerContext) {
        guard !inputClosed else { return }
        inputClosed = true
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !outputClosed else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        let buffer = unwrapOutboundIn(data)
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer), endStream: false))), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .output else {
            context.close(mode: mode, promise: promise)
            return
        }
        guard !outputClosed else {
            promise?.succeed(())
            return
        }
        outputClosed = true
        context.writeAndFlush(
            wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))), promise: promise)
    }
}

@available(*, unavailable)
extension HTTP2StreamBytesHandler: Sendable {}
