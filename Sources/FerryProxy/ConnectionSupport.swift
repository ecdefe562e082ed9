import FerryConfig
import NIOCore
import NIOHTTP1

/// Closes a tunnel with no traffic in either direction for `timeout`.
///
/// Traffic only sets a flag (no clock read, no timer per message); the loop's sweep turns the flag
/// into a timestamp once per tick, so the timeout is exact to within one sweep interval.
final class TunnelIdleTimer {
    let timeout: TimeAmount
    let client: any Channel
    let upstream: any Channel
    private var lastActivity = NIODeadline.now()
    private var sawActivity = false

    init(timeout: TimeAmount, client: any Channel, upstream: any Channel) {
        self.timeout = timeout
        self.client = client
        self.upstream = upstream
    }

    func touch() { sawActivity = true }

    /// Called by the loop's sweep: closes both sides once the tunnel has been quiet for `timeout`.
    func sweep(now: NIODeadline) {
        if sawActivity {
            sawActivity = false
            lastActivity = now
        } else if now - lastActivity >= timeout {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
    }
}

/// Tells the proxy handler when the first byte of a new request arrives (for the header timeout).
final class ConnectionActivity {
    var onFirstByte: (() -> Void)?
    private var armed = true

    func arm() { armed = true }

    func sawBytes() {
        guard armed else { return }
        armed = false
        onFirstByte?()
    }
}

/// One of NIO's HTTP decoders (`HTTPDecoder`), as a `ByteToMessageDecoder` of Ferry's.
///
/// - Client side: it tells `ConnectionActivity` when bytes arrive (for the header timeout), inside
///   the decoder rather than from a handler in front of it, which cost one more pipeline hop on
///   every read.
/// - Upstream side: NIO's `ByteToMessageHandler` of a response decoder also observes writes (the
///   decoder must know each request's method: a response to HEAD has no body), which passes every
///   request part through it on the way to `HTTPRequestEncoder`. Ferry writes requests as bytes
///   from `UpstreamHTTPHandler`'s context and tells the decoder the method itself
///   (`HTTPDecoder.write(data:)`); wrapped, the decoder's handler is inbound-only, so those byte
///   writes never pass through it.
struct WrappedHTTPDecoder<In, Out>: ByteToMessageDecoder {
    typealias InboundOut = In
    let decoder: HTTPDecoder<In, Out>
    let activity: ConnectionActivity?

    init(_ decoder: HTTPDecoder<In, Out>, activity: ConnectionActivity? = nil) {
        self.decoder = decoder
        self.activity = activity
    }

    func decoderAdded(context: ChannelHandlerContext) { decoder.decoderAdded(context: context) }
    func decoderRemoved(context: ChannelHandlerContext) { decoder.decoderRemoved(context: context) }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let activity, buffer.readableBytes > 0 { activity.sawBytes() }
        return try decoder.decode(context: context, buffer: &buffer)
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decoder.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }
}

extension Duration {
    var timeAmount: TimeAmount { .milliseconds(wholeMilliseconds) }
}
