import FerryTLS
import Foundation
import NIOCore
import NIOPosix
import Testing

/// A tiny HTTP/1.1 responder behind `TLSHandler`: enough for real TLS clients to complete requests.
final class TinyHTTPResponder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var buffered = ""

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        buffered += String(buffer: unwrapInboundIn(data))
        while let end = buffered.range(of: "\r\n\r\n") {
            buffered.removeSubrange(buffered.startIndex..<end.upperBound)
            let body = "hello over tls\n"
            context.writeAndFlush(
                wrapOutboundOut(
                    ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")),
                promise: nil)
        }
    }
}

/// A loopback TLS server with the handler under test.
final class TLSTestServer: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let channel: any Channel
    let counters = TLSCounters()
    let context: TLSContext
    var port: Int { channel.localAddress?.port ?? 0 }

    init(context: TLSContext) throws {
        self.context = context
        let counters = self.counters
        channel = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context, counters: counters))
                    try channel.pipeline.syncOperations.addHandler(TinyHTTPResponder())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    deinit {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

@Suite(.serialized) struct TLSRealPeerTests {
    static let curl = ["/usr/bin/curl", "/usr/local/bin/curl"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static let openssl = ["/usr/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test(arguments: [("--tlsv1.2", "--tls-max", "1.2", "TLSv1.2"), ("--tlsv1.3", "--tls-max", "1.3", "TLSv1.3")])
    func curlCompletesRequestsWithALPN(minimum: String, maxFlag: String, maximum: String, expected: String) throws {
        guard let curl = Self.curl else {
            print("skipped: curl is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let pair = try fixture.pair("server")
        let server = try TLSTestServer(context: TLSContext.server(.init(certificates: [pair])))
        let output = try run(
            curl,
            [
                "-sS", "-v", minimum, maxFlag, maximum, "--http1.1", "--cacert", pair.certificatePath,
                "https://localhost:\(server.port)/",
            ])
        #expect(output.contains("hello over tls"), "\(output)")
        #expect(output.contains("SSL connection using \(expected)"))
        #expect(output.contains("ALPN: server accepted http/1.1"))
    }

    @Test func sniSelectsTheMatchingCertificate() throws {
        guard let openssl = Self.openssl else {
            print("skipped: openssl is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let defaultPair = try fixture.pair("default")
        var other = try fixture.pair("other")
        other.serverNames = ["b.example", "*.wild.example"]
        let server = try TLSTestServer(context: TLSContext.server(.init(certificates: [defaultPair, other])))
        func fingerprint(servername: String) throws -> String {
            let chain = try run(
                "/bin/sh",
                [
                    "-c",
                    "\(openssl) s_client -connect 127.0.0.1:\(server.port) -servername \(servername) </dev/null 2>/dev/null | \(openssl) x509 -noout -fingerprint -sha256",
                ])
            return chain.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func fileFingerprint(_ path: String) throws -> String {
            try run(openssl, ["x509", "-in", path, "-noout", "-fingerprint", "-sha256"]).trimmingCharacters(
                in: .whitespacesAndNewlines)
        }
        #expect(try fingerprint(servername: "b.example") == fileFingerprint(other.certificatePath))
        #expect(try fingerprint(servername: "x.wild.example") == fileFingerprint(other.certificatePath))
        #expect(try fingerprint(servername: "a.example") == fileFingerprint(defaultPair.certificatePath))
        #expect(try fingerprint(servername: "b.example") != fileFingerprint(defaultPair.certificatePath))
    }

    @Test func tls11AndBelowAreRefusedWithAProtocolVersionAlert() throws {
        guard let openssl = Self.openssl else {
            print("skipped: openssl is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let server = try TLSTestServer(context: fixture.serverContext())
        let output = try run(
            "/bin/sh",
            [
                "-c",
                "\(openssl) s_client -connect 127.0.0.1:\(server.port) -tls1_1 -cipher DEFAULT@SECLEVEL=0 </dev/null 2>&1",
            ])
        #expect(output.contains("alert protocol version"), "\(output)")
        #expect(output.contains("Cipher is (NONE)"), "no session may be established")
        #expect(server.counters.failures["handshake_failed"] == 1)
    }

    @Test func renegotiationIsRefused() throws {
        guard let openssl = Self.openssl else {
            print("skipped: openssl is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let server = try TLSTestServer(context: fixture.serverContext())
        // `R` asks s_client to renegotiate (TLS 1.2 only); the server must refuse.
        let output = try run(
            "/bin/sh",
            [
                "-c",
                "(sleep 1; printf 'R\\n'; sleep 1) | \(openssl) s_client -connect 127.0.0.1:\(server.port) -tls1_2 -no_ign_eof 2>&1",
            ])
        #expect(output.contains("RENEGOTIATING"), "\(output)")
        #expect(output.contains("no renegotiation") || output.contains("unexpected message"), "\(output)")
    }

    @Test func pythonSSLClientAndSessionResumptionAcrossContextsSharingTicketKeys() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/env") else { return }
        let fixture = try CertificateFixture()
        let pair = try fixture.pair("server")
        let keys = (0..<80).map { _ in UInt8.random(in: 0...255) }
        // Two servers, as two workers: a ticket from the first must resume on the second.
        let first = try TLSTestServer(context: TLSContext.server(.init(certificates: [pair], ticketKeys: [keys])))
        let second = try TLSTestServer(context: TLSContext.server(.init(certificates: [pair], ticketKeys: [keys])))
        let script = """
            import socket, ssl, sys
            ctx = ssl.create_default_context(cafile=sys.argv[1])
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            def fetch(port, session=None):
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                        tls.sendall(b"GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
                        data = b""
                        while b"hello over tls" not in data:
                            chunk = tls.recv(4096)
                            if not chunk: break
                            data += chunk
                        return tls.session, tls.session_reused, data
            session, reused, data = fetch(int(sys.argv[2]))
            assert b"hello over tls" in data and not reused
            _, reused_elsewhere, data = fetch(int(sys.argv[3]), session)
            print("ok" if reused_elsewhere and b"hello over tls" in data else "not resumed")
            """
        let output = try run(
            "/usr/bin/env", ["python3", "-c", script, pair.certificatePath, String(first.port), String(second.port)])
        #expect(output.contains("ok"), "\(output)")
        #expect(second.counters.completedHandshakes.resumed == 1)
    }

    /// A session from `issuer` saved with `-sess_out`, then offered to `resumer` with `-sess_in`:
    /// "Reused" or "New", as s_client reports it (TLS 1.3: tickets arrive after the handshake, so
    /// the first connection sends a request and reads the answer before it ends).
    static func resumes(issuer: Int, resumer: Int, directory: String, name: String) throws -> Bool {
        let session = "\(directory)/\(name).session"
        let request = "printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n'; sleep 0.3"
        let first = try run(
            "/bin/sh",
            ["-c", "(\(request)) | \(openssl!) s_client -connect 127.0.0.1:\(issuer) -sess_out \(session) 2>&1"])
        guard first.contains("hello over tls") else { throw TLSError(code: .protocolError, message: first) }
        let second = try run(
            "/bin/sh",
            ["-c", "(\(request)) | \(openssl!) s_client -connect 127.0.0.1:\(resumer) -sess_in \(session) 2>&1"])
        guard second.contains("hello over tls") else { throw TLSError(code: .protocolError, message: second) }
        return second.contains("\nReused, ")
    }

    @Test func ticketKeyRotationOlderKeysDecryptFirstKeyEncryptsReplacedKeysStopResuming() throws {
        guard Self.openssl != nil else {
            print("skipped: openssl is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let pair = try fixture.pair("server")
        func key() -> [UInt8] { (0..<80).map { _ in UInt8.random(in: 0...255) } }
        let (old, new) = (key(), key())
        let hostA = try TLSTestServer(context: TLSContext.server(.init(certificates: [pair], ticketKeys: [old])))
        // Host B got the new key prepended (the rotation's first step): it still decrypts A's tickets.
        let hostB = try TLSTestServer(context: TLSContext.server(.init(certificates: [pair], ticketKeys: [new, old])))
        // Host C knows only the new key.
        let hostC = try TLSTestServer(context: TLSContext.server(.init(certificates: [pair], ticketKeys: [new])))
        let directory = fixture.directory.path
        #expect(try Self.resumes(issuer: hostA.port, resumer: hostB.port, directory: directory, name: "a-b"))
        #expect(try !Self.resumes(issuer: hostA.port, resumer: hostC.port, directory: directory, name: "a-c"))
        // B encrypts with its first key, which C knows.
        #expect(try Self.resumes(issuer: hostB.port, resumer: hostC.port, directory: directory, name: "b-c"))
        // A rotation in place on a serving context: A's old tickets no longer resume on A, new ones
        // resume on C.
        let before = "\(directory)/a-a"
        _ = try Self.resumes(issuer: hostA.port, resumer: hostA.port, directory: directory, name: "a-a")
        try hostA.context.ticketKeys?.replace(with: [new])
        let stale = try run(
            "/bin/sh",
            [
                "-c",
                "(printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'; sleep 0.3) | \(Self.openssl!) s_client -connect 127.0.0.1:\(hostA.port) -sess_in \(before).session 2>&1",
            ])
        #expect(stale.contains("\nNew, "), "\(stale)")
        #expect(try Self.resumes(issuer: hostA.port, resumer: hostC.port, directory: directory, name: "a2-c"))
        #expect(throws: TLSError.self) { try hostA.context.ticketKeys?.replace(with: [[1, 2, 3]]) }
        #expect(throws: TLSError.self) { try hostA.context.ticketKeys?.replace(with: []) }
    }
}
