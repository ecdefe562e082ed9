import FerryConfig
import NIOCore
import NIOHTTP1
import NIOPosix

/// Opens a fresh upstream connection for each WebSocket upgrade.
///
/// Deliberately a different type from `HTTPConnectionPool`, with no way to hand a connection to it
/// or take one from it: an upgraded connection can never serve an HTTP request, and an HTTP
/// connection can never become a tunnel. The seed's bug is impossible by construction.
struct TunnelConnector {
    /// The server of the backend this tunnel goes to.
    let address: BackendAddress
    let eventLoop: any EventLoop

    enum UpgradeAnswer {
        /// 101 with `Upgrade: websocket`: HTTP codecs can come off and the channels be glued.
        case switching(HTTPResponseHead, any Channel)
        /// Any other answer: relayed to the client as a normal response, then both are closed.
        case refused(HTTPResponseHead, ByteBuffer, any Channel)
    }

    /// Connects, sends the upgrade request, and reports the backend's answer. `expectedAccept`:
    /// the `Sec-WebSocket-Accept` a 101 must carry when Ferry chose the key (a WebSocket over
    /// HTTP/2); a 101 without it fails the upgrade.
    func upgrade(
        _ head: HTTPRequestHead, expectedAccept: String? = nil, connectTimeout: Duration, responseTimeout: Duration
    ) -> EventLoopFuture<UpgradeAnswer> {
        let promise = eventLoop.makePromise(of: UpgradeAnswer.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.nanoseconds(Int64(connectTimeout.wholeMilliseconds) * 1_000_000))
            .channelOption(.recvAllocator, value: ProxyServer.receiveAllocator)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTPRequestEncoder(), name: "tunnel-encoder")
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes)),
                        name: "tunnel-decoder")
                    try channel.pipeline.syncOperations.addHandler(
                        TunnelUpgradeHandler(promise: promise, expectedAccept: expectedAccept), name: "tunnel-upgrade")
                }
            }
        address.connect(bootstrap).whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let channel):
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                let timeout = channel.eventLoop.scheduleTask(
                    in: .nanoseconds(Int64(responseTimeout.wholeMilliseconds) * 1_000_000)
                ) {
                    promise.fail(ProxyError.upstreamTimeout)
                    channel.close(promise: nil)
                }
                promise.futureResult.whenComplete { _ in timeout.cancel() }
            }
        }
        return promise.futureResult
    }
}

/// Waits for the backend's answer to an upgrade request.
final class TunnelUpgradeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<TunnelConnector.UpgradeAnswer>
    private let expectedAccept: String?
    private var refusedHead: HTTPResponseHead?
    private var switchingHead: HTTPResponseHead?
    private var refusedBody = ByteBuffer()
    private var done = false

    init(promise: EventLoopPromise<TunnelConnector.UpgradeAnswer>, expectedAccept: String? = nil) {
        self.promise = promise
        self.expectedAccept = expectedAccept
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            let upgradeHeader = head.headers[canonicalForm: "upgrade"].map { $0.lowercased() }
            if head.status == .switchingProtocols && upgradeHeader.contains("websocket") {
                if let expectedAccept, head.headers.first(name: "sec-websocket-accept") != expectedAccept {
                    done = true
                    promise.fail(ProxyError.invalidResponse("101 without the expected Sec-WebSocket-Accept"))
                    context.close(promise: nil)
                    return
                }
                // Answered at `.end`, which the decoder emits right after a 101's head: the glue
                // must not be installed while HTTP parts are still being delivered.
                switchingHead = head
            } else {
                refusedHead = head
            }
        case .body(var body):
            // A refusal's body is relayed; keep it bounded.
            if refusedBody.readableBytes < 64 * 1024 { refusedBody.writeBuffer(&body) }
        case .end:
            if let switchingHead {
                done = true
                promise.succeed(.switching(switchingHead, context.channel))
            } else if let refusedHead {
                done = true
                promise.succeed(.refused(refusedHead, refusedBody, context.channel))
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            if let refusedHead {
                promise.succeed(.refused(refusedHead, refusedBody, context.channel))
            } else {
                promise.fail(ChannelError.eof)
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            promise.fail(error)
        }
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension TunnelUpgradeHandler: Sendable {}

enum ProxyError: Error {
    case upstreamTimeout
    /// The backend's response broke HTTP/1 (its head, or its body's framing).
    case invalidResponse(String)
}
