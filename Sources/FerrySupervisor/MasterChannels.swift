import CSystemd
import FerryConfig
import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOPosix

#if canImport(Glibc)
    import Glibc
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
#endif

/// Splits a byte stream into lines and hands each to a closure (on the channel's loop).
final class LineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let onLine: (String) -> Void
    let onClose: () -> Void

    init(onLine: @escaping (String) -> Void, onClose: @escaping () -> Void = {}) {
        self.onLine = onLine
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onLine(String(buffer: unwrapInboundIn(data)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension LineHandler: Sendable {}

/// The master's end of a worker's socketpair.
enum WorkerChannel {
    static func attach(fd: CInt, pid: pid_t, master: Master) -> EventLoopFuture<any Channel> {
        NIOPipeBootstrap(group: master.loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        LineHandler(
                            onLine: { line in
                                guard let message = JSONLine.decode(WorkerToMaster.self, from: line) else { return }
                                master.handle(.workerMessage(pid: pid, message))
                            },
                            onClose: { master.handle(.workerChannelClosed(pid: pid)) }))
                }
            }
            .takingOwnershipOfDescriptor(inputOutput: fd)
    }
}

/// A backend's stdout/stderr, line by line into the master's log with the backend's name.
enum BackendOutput {
    static func attach(fd: CInt, name: String, master: Master) -> EventLoopFuture<any Channel> {
        let logger = master.outputLogger
        return NIOPipeBootstrap(group: master.loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        LineHandler(onLine: { line in logger.info("[\(name)] \(line)") }))
                }
            }
            .takingOwnershipOfDescriptor(input: fd)
    }
}

/// Waits until a backend accepts connections (or answers 2xx on its health path), polling.
enum Readiness {
    static func isReady(_ answer: ServerProbe.Result) -> Bool {
        switch answer {
        case .connected: true
        case .status(let code): (200..<300).contains(code)
        case .failed: false
        }
    }

    static func await(backend: BackendConfiguration, pid: pid_t, master: Master) {
        let deadline = NIODeadline.now() + .milliseconds(backend.readiness.timeout.wholeMilliseconds)
        attempt(backend: backend, pid: pid, master: master, deadline: deadline)
    }

    private static func attempt(backend: BackendConfiguration, pid: pid_t, master: Master, deadline: NIODeadline) {
        guard master.backends[backend.name]?.pid == pid, master.backends[backend.name]?.phase == .starting else {
            return
        }
        if NIODeadline.now() > deadline {
            master.handle(.backendReadinessTimedOut(name: backend.name, pid: pid))
            return
        }
        let probe = ServerProbe.probe(
            backend.address, path: backend.readiness.httpPath, timeout: .seconds(2), on: master.loop)
        probe.whenComplete { result in
            if case .success(let answer) = result, Self.isReady(answer) {
                master.handle(.backendReady(name: backend.name, pid: pid))
            } else {
                master.loop.scheduleTask(in: .milliseconds(100)) {
                    attempt(backend: backend, pid: pid, master: master, deadline: deadline)
                }
            }
        }
    }
}

/// The control socket: line-delimited JSON requests from `ferry status|reload|stop`, from root or
/// the master's own user (checked with SO_PEERCRED), or members of `control_socket_group`.
enum ControlServer {
    struct PeerCredentials: Sendable {
        var pid: Int32
        var uid: UInt32
        var gid: UInt32
    }

    static func start(master: Master) throws -> EventLoopFuture<any Channel> {
        let settings = master.configuration.master
        let path = settings.controlSocket
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        unlink(path)
        let allowedGroup: gid_t? = settings.controlSocketGroup.flatMap { name in
            getgrnam(name).map { $0.pointee.gr_gid }
        }
        return ServerBootstrap(group: master.loop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        ControlConnectionHandler(master: master, allowedGroup: allowedGroup))
                }
            }
            .bind(unixDomainSocketPath: path)
            .map { channel in
                chmod(path, mode_t(settings.controlSocketMode))
                if let allowedGroup { chown(path, getuid(), allowedGroup) }
                return channel
            }
    }
}

final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let master: Master
    let allowedGroup: gid_t?
    private var authorized: Bool?

    init(master: Master, allowedGroup: gid_t?) {
        self.master = master
        self.allowedGroup = allowedGroup
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        let allowedGroup = self.allowedGroup
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        guard let provider = context.channel as? any SocketOptionProvider else { return }
        provider.unsafeGetSocketOption(
            level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: SO_PEERCRED)
        ).whenComplete {
            (result: Result<ControlServer.PeerCredentials, any Error>) in
            let (handler, context) = bound.value
            guard case .success(let credentials) = result else {
                handler.refuse(context: context, "cannot identify the peer")
                return
            }
            let allowed =
                credentials.uid == 0 || credentials.uid == getuid()
                || (allowedGroup != nil && credentials.gid == allowedGroup!)
            if allowed {
                handler.authorized = true
            } else {
                handler.master.logger.warning("control socket: refused uid \(credentials.uid)")
                handler.refuse(
                    context: context, "permission denied: uid \(credentials.uid) may not control this master")
            }
        }
    }

    private func refuse(context: ChannelHandlerContext, _ message: String) {
        authorized = false
        let line = JSONLine.encode(ControlResponse(ok: false, message: message))
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: line))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard authorized == true else { return }
        let line = String(buffer: unwrapInboundIn(data))
        guard let request = JSONLine.decode(ControlRequest.self, from: line) else {
            let response = JSONLine.encode(ControlResponse(ok: false, message: "not a JSON request line"))
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
            return
        }
        let promise = context.eventLoop.makePromise(of: ControlResponse.self)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { response in
            let (handler, context) = bound.value
            context.writeAndFlush(handler.wrapOutboundOut(ByteBuffer(string: JSONLine.encode(response))), promise: nil)
        }
        master.handle(.control(request, promise))
    }
}

@available(*, unavailable)
extension ControlConnectionHandler: Sendable {}

/// Prometheus text exposition of the status document.
enum Metrics {
    static func prometheus(_ status: StatusDocument) -> String {
        var lines: [String] = []
        lines.append("# TYPE ferry_generation gauge")
        lines.append("ferry_generation \(status.generation)")
        lines.append("# TYPE ferry_workers gauge")
        lines.append("ferry_workers \(status.workers.count)")
        lines.append("# TYPE ferry_connections_open gauge")
        lines.append("# TYPE ferry_requests_total counter")
        lines.append("# TYPE ferry_active_tunnels gauge")
        for worker in status.workers {
            guard let stats = worker.stats else { continue }
            let labels = "pid=\"\(worker.pid)\",generation=\"\(worker.generation)\""
            lines.append("ferry_connections_open{\(labels)} \(stats.connectionsOpen)")
            lines.append("ferry_requests_total{\(labels)} \(stats.requests)")
            lines.append("ferry_active_tunnels{\(labels)} \(stats.activeTunnels)")
        }
        lines.append("# TYPE ferry_protocol_connections_total counter")
        lines.append("# TYPE ferry_protocol_requests_total counter")
        lines.append("# TYPE ferry_http2_streams_open gauge")
        lines.append("# TYPE ferry_http2_websockets_total counter")
        lines.append("# TYPE ferry_http2_refused_total counter")
        for worker in status.workers {
            guard let protocols = worker.stats?.protocols else { continue }
            let labels = "pid=\"\(worker.pid)\",generation=\"\(worker.generation)\""
            lines.append(
                "ferry_protocol_connections_total{\(labels),protocol=\"http/1.1\"} \(protocols.http1Connections)")
            lines.append("ferry_protocol_connections_total{\(labels),protocol=\"h2\"} \(protocols.http2Connections)")
            lines.append("ferry_protocol_requests_total{\(labels),protocol=\"http/1.1\"} \(protocols.http1Requests)")
            lines.append("ferry_protocol_requests_total{\(labels),protocol=\"h2\"} \(protocols.http2Requests)")
            lines.append("ferry_http2_streams_open{\(labels)} \(protocols.http2StreamsOpen)")
            lines.append("ferry_http2_websockets_total{\(labels)} \(protocols.http2Tunnels)")
            for (reason, count) in protocols.http2Refused.sorted(by: { $0.key < $1.key }) {
                lines.append("ferry_http2_refused_total{\(labels),reason=\"\(reason)\"} \(count)")
            }
        }
        lines.append("# TYPE ferry_pool_opened_total counter")
        lines.append("# TYPE ferry_pool_reused_total counter")
        lines.append("# TYPE ferry_pool_closed_total counter")
        lines.append("# TYPE ferry_pool_retries_total counter")
        for pool in status.pools {
            let server = pool.server.map { ",server=\"\($0)\"" } ?? ""
            let labels = "backend=\"\(pool.backend)\"\(server),protocol=\"\(pool.protocol)\""
            lines.append("ferry_pool_retries_total{\(labels)} \(pool.retries)")
            lines.append("ferry_pool_opened_total{\(labels)} \(pool.opened)")
            lines.append("ferry_pool_reused_total{\(labels)} \(pool.reused)")
            for (reason, count) in pool.closed.sorted(by: { $0.key < $1.key }) {
                lines.append("ferry_pool_closed_total{\(labels),reason=\"\(reason)\"} \(count)")
            }
        }
        if let servers = status.servers {
            // One gauge per server and state (1 for the current one), as node_exporter does for states.
            lines.append("# TYPE ferry_server_state gauge")
            lines.append("# TYPE ferry_server_active gauge")
            lines.append("# TYPE ferry_server_tunnels gauge")
            for server in servers {
                let labels = "backend=\"\(server.backend)\",server=\"\(server.server)\""
                for state in ["up", "down", "draining", "starting", "backoff", "failed", "stopped"] {
                    lines.append("ferry_server_state{\(labels),state=\"\(state)\"} \(server.state == state ? 1 : 0)")
                }
                lines.append("ferry_server_active{\(labels)} \(server.active)")
                lines.append("ferry_server_tunnels{\(labels)} \(server.tunnels)")
            }
        }
        if let certificates = status.certificates, !certificates.isEmpty {
            lines.append("# TYPE ferry_certificate_days_left gauge")
            lines.append("# TYPE ferry_certificate_not_after_seconds gauge")
            for certificate in certificates {
                let labels =
                    "listener=\"\(certificate.listener)\",path=\"\(certificate.path)\",source=\"\(certificate.source)\""
                lines.append("ferry_certificate_days_left{\(labels)} \(certificate.daysLeft)")
                lines.append("ferry_certificate_not_after_seconds{\(labels)} \(Int(certificate.notAfter))")
            }
            let acme = certificates.compactMap { row in row.acme.map { (row.listener, $0) } }
            if !acme.isEmpty {
                lines.append("# TYPE ferry_acme_state gauge")
                lines.append("# TYPE ferry_acme_last_issuance_seconds gauge")
                for (listener, state) in acme {
                    for name in ["issued", "awaiting", "ordering", "failing"] {
                        lines.append(
                            "ferry_acme_state{listener=\"\(listener)\",state=\"\(name)\"} \(state.state == name ? 1 : 0)"
                        )
                    }
                    if let seconds = state.lastIssuanceSeconds {
                        lines.append("ferry_acme_last_issuance_seconds{listener=\"\(listener)\"} \(seconds)")
                    }
                }
            }
        }
        lines.append("# TYPE ferry_backend_restarts_total counter")
        for backend in status.backends {
            lines.append("ferry_backend_restarts_total{backend=\"\(backend.name)\"} \(backend.restarts)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
