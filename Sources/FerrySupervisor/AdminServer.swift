import FerryConfig
import FerryTLS
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The master's plain-HTTP endpoints, on the master's own event loop (answers read the master's
/// state directly, no lock):
///
/// - `[health] listen`: `/ready` and `/live` for load balancers and orchestrators;
/// - `[admin] listen`: the same, plus the status page (`/`), `/status.json` (the document
///   `ferry status --json` prints) and `/history.json?since=T` (the last ten minutes, a sample a
///   second). When both name the same address, one listener serves everything.
///
/// `/ready` is 200 once the workers and backends are ready (systemd's READY=1) and 503 from the
/// moment a stop begins, during `drain_delay` too, while the host still serves: a balancer checking
/// it stops sending new connections before anything is closed. `/live` is 200 while the master's
/// loop answers: a hung or stopped master fails it; a stop does not. They need no credentials; the
/// admin paths do for clients not on loopback (HTTP Basic against `user` / `password_sha256`, 403
/// when none is configured).
enum AdminServer {
    static func start(address: ListenAddress, admin: AdminSettings?, master: Master) -> EventLoopFuture<any Channel> {
        guard case .inet(let host, let port) = address else {
            return master.loop.makeFailedFuture(ChannelError.inappropriateOperationForState)
        }
        return ServerBootstrap(group: master.loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(master: master, admin: admin))
                }
            }
            .bind(host: host, port: port)
    }
}

final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    struct Answer {
        var status: HTTPResponseStatus
        var contentType = "text/plain; charset=utf-8"
        var body: ByteBuffer
        var headers: [(String, String)] = []

        init(_ status: HTTPResponseStatus, _ text: String) {
            self.status = status
            body = ByteBuffer(string: text)
        }
    }

    private let master: Master
    /// nil: a `[health]` listener (readiness only).
    private let admin: AdminSettings?

    init(master: Master, admin: AdminSettings?) {
        self.master = master
        self.admin = admin
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let answer = self.answer(head, peer: context.channel.remoteAddress)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: answer.contentType)
        headers.add(name: "Content-Length", value: String(answer.body.readableBytes))
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        for (name, value) in answer.headers { headers.add(name: name, value: value) }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: answer.status, headers: headers))),
            promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(answer.body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func answer(_ head: HTTPRequestHead, peer: SocketAddress?) -> Answer {
        master.loop.assertInEventLoop()
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = parts.first.map(String.init) ?? ""
        switch path {
        case "/live":
            return Answer(.ok, "alive\n")
        case "/ready":
            if master.stopping { return Answer(.serviceUnavailable, "stopping\n") }
            if !master.announcedReady { return Answer(.serviceUnavailable, "starting\n") }
            return Answer(.ok, "ready: \(master.summary())\n")
        default:
            break
        }
        guard let admin else { return Answer(.notFound, "/ready or /live\n") }
        if let refusal = Self.authorize(head, peer: peer, admin: admin) { return refusal }
        switch path {
        case "/", "/index.html":
            var answer = Answer(.ok, AdminPage.html)
            answer.contentType = "text/html; charset=utf-8"
            answer.headers = [
                (
                    "Content-Security-Policy",
                    "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:"
                )
            ]
            return answer
        case "/status.json":
            return Self.json(master.statusDocument())
        case "/history.json":
            let since = parts.count > 1 ? Self.queryValue("since", in: String(parts[1])).flatMap(Double.init) : nil
            return Self.json(master.history.document(since: since ?? 0))
        default:
            return Answer(.notFound, "not found: / (the status page), /status.json, /history.json, /ready, /live\n")
        }
    }

    /// nil when the client may see the admin paths: a loopback peer, or the configured user and
    /// password over HTTP Basic.
    static func authorize(_ head: HTTPRequestHead, peer: SocketAddress?, admin: AdminSettings) -> Answer? {
        if let address = peer?.ipAddress, isLoopback(address) { return nil }
        guard let user = admin.user, let digest = admin.passwordSHA256 else {
            return Answer(.forbidden, "the admin listener serves loopback clients only (no user/password_sha256 set)\n")
        }
        if let credentials = head.headers.first(name: "Authorization"), credentials.lowercased().hasPrefix("basic "),
            let decoded = Data(base64Encoded: String(credentials.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let text = String(data: decoded, encoding: .utf8),
            let colon = text.firstIndex(of: ":")
        {
            let givenUser = String(text[..<colon])
            let givenDigest = TLSDigest.sha256Hex(Array(text[text.index(after: colon)...].utf8))
            // Compared in full whatever differs first.
            let same = zip(Array(givenDigest.utf8), Array(digest.utf8)).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
            if same && givenDigest.count == digest.count && givenUser == user { return nil }
        }
        var refusal = Answer(.unauthorized, "credentials required\n")
        refusal.headers = [("WWW-Authenticate", "Basic realm=\"ferry\", charset=\"UTF-8\"")]
        return refusal
    }

    static func isLoopback(_ address: String) -> Bool {
        address == "::1" || address.hasPrefix("127.") || address.hasPrefix("::ffff:127.")
    }

    static func queryValue(_ name: String, in query: String) -> String? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.first == Substring(name) { return parts.count > 1 ? String(parts[1]) : "" }
        }
        return nil
    }

    static func json(_ value: some Encodable) -> Answer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var answer = Answer(.ok, "")
        answer.body = ByteBuffer(bytes: (try? encoder.encode(value)) ?? Data("{}".utf8))
        answer.contentType = "application/json"
        return answer
    }
}

@available(*, unavailable)
extension AdminHandler: Sendable {}
