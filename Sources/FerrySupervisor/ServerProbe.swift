import FerryConfig
import NIOCore
import NIOPosix

/// One probe of a server, for readiness and active health checks: a TCP connect, or an HTTP/1.0
/// GET whose status is returned.
enum ServerProbe {
    enum Result: Equatable {
        /// Connected (TCP probe), or answered with this status (HTTP probe).
        case connected
        case status(Int)
        case failed(String)
    }

    static func probe(
        _ address: BackendAddress, path: String?, host: String = "localhost", timeout: TimeAmount,
        on loop: any EventLoop
    ) -> EventLoopFuture<Result> {
        let bootstrap = ClientBootstrap(group: loop).connectTimeout(timeout)
        let connected: EventLoopFuture<any Channel>
        switch address {
        case .unix(let socketPath): connected = bootstrap.connect(unixDomainSocketPath: socketPath)
        case .inet(let host, let port): connected = bootstrap.connect(host: host, port: port)
        }
        return connected.flatMap { channel -> EventLoopFuture<Result> in
            guard let path else {
                channel.close(promise: nil)
                return channel.eventLoop.makeSucceededFuture(.connected)
            }
            let promise = channel.eventLoop.makePromise(of: Result.self)
            do {
                try channel.pipeline.syncOperations.addHandler(StatusLineHandler(promise: promise))
            } catch {
                promise.succeed(.failed("\(error)"))
            }
            channel.writeAndFlush(
                ByteBuffer(string: "GET \(path) HTTP/1.0\r\nHost: \(host)\r\nUser-Agent: ferry-health\r\n\r\n"),
                promise: nil)
            let expiry = channel.eventLoop.scheduleTask(in: timeout) { promise.succeed(.failed("timed out")) }
            return promise.futureResult.always { _ in
                expiry.cancel()
                channel.close(promise: nil)
            }
        }.flatMapErrorThrowing { error in .failed("\(error)") }
    }
}

/// Reads the status code off the first line of an HTTP response.
final class StatusLineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<ServerProbe.Result>
    private var received = ""

    init(promise: EventLoopPromise<ServerProbe.Result>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += String(buffer: unwrapInboundIn(data))
        guard received.utf8.count >= 12 else { return }
        let parts = received.split(separator: " ", maxSplits: 2)
        if parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]) {
            promise.succeed(.status(code))
        } else {
            promise.succeed(.failed("not an HTTP response"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.succeed(.failed("closed before a status line"))
    }
}

@available(*, unavailable)
extension StatusLineHandler: Sendable {}
