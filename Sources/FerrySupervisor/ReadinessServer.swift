import FerryConfig
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `[health] listen`: the master's plain-HTTP readiness and liveness endpoint, on the master's own
/// event loop (its answers read the master's state directly, no lock).
///
/// `/ready` is 200 once the workers and backends are ready (systemd's READY=1) and 503 from the
/// moment a stop begins, during `drain_delay` too, while the host still serves: a balancer checking
/// it stops sending new connections before anything is closed. `/live` is 200 while the master's
/// loop answers: a hung or stopped master fails it; a stop does not.
enum ReadinessServer {
    static func start(_ settings: HealthEndpointSettings, master: Master) -> EventLoopFuture<any Channel> {
        guard case .inet(let host, let port) = settings.listen else {
            return master.loop.makeFailedFuture(ChannelError.inappropriateOperationForState)
        }
        return ServerBootstrap(group: master.loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ReadinessHandler(master: master))
                }
            }
            .bind(host: host, port: port)
    }
}

final class ReadinessHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let master: Master

    init(master: Master) {
        self.master = master
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let (status, body) = answer(path: String(head.uri.split(separator: "?").first ?? ""))
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Cache-Control", value: "no-store")
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func answer(path: String) -> (HTTPResponseStatus, String) {
        master.loop.assertInEventLoop()
        switch path {
        case "/live":
            return (.ok, "alive\n")
        case "/ready":
            if master.stopping { return (.serviceUnavailable, "stopping\n") }
            if !master.announcedReady { return (.serviceUnavailable, "starting\n") }
            return (.ok, "ready: \(master.summary())\n")
        default:
            return (.notFound, "/ready or /live\n")
        }
    }
}

@available(*, unavailable)
extension ReadinessHandler: Sendable {}
