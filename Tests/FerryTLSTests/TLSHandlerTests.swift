import FerryTLS
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@Suite struct TLSHandlerTests {
    @Test func handshakeCompletesAndReportsWhatWasNegotiated() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        try pair.shuttle()
        let server = try #require(pair.serverCollector.handshake)
        let client = try #require(pair.clientCollector.handshake)
        #expect(server.protocolVersion == "TLSv1.3")
        #expect(server.alpn == "http/1.1")
        #expect(client.alpn == "http/1.1")
        #expect(!server.resumed)
        #expect(pair.counters.completedHandshakes.full == 1)
    }

    @Test func dataFlowsBothWays() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        try pair.shuttle()
        _ = pair.send("GET / HTTP/1.1\r\n\r\n", from: pair.client)
        try pair.shuttle()
        #expect(pair.serverCollector.text == "GET / HTTP/1.1\r\n\r\n")
        _ = pair.send("HTTP/1.1 200 OK\r\n\r\n", from: pair.server)
        try pair.shuttle()
        #expect(pair.clientCollector.text == "HTTP/1.1 200 OK\r\n\r\n")
    }

    @Test func writesBeforeTheHandshakeAreBufferedAndDelivered() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        let written = pair.send("early data", from: pair.client)
        let done = NIOLockedValueBox(false)
        written.whenSuccess { done.withLockedValue { $0 = true } }
        #expect(!done.withLockedValue { $0 })
        try pair.shuttle()
        #expect(done.withLockedValue { $0 })
        #expect(pair.serverCollector.text == "early data")
    }

    @Test func largeWritesArriveIntact() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        try pair.shuttle()
        var payload = ByteBuffer()
        for index in 0..<(4 * 1024 * 1024 / 16) { payload.writeString(String(format: "%015d\n", index)) }
        let expected = payload
        pair.server.writeAndFlush(payload, promise: nil)
        try pair.shuttle()
        #expect(pair.clientCollector.received == expected)
    }

    @Test func closeNotifyFromTheClientClosesTheServerWithItsOwnCloseNotify() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        try pair.shuttle()
        pair.client.close(promise: nil)
        // The client's close_notify is in its outbound buffer; deliver it.
        while let bytes = try pair.client.readOutbound(as: ByteBuffer.self) { try pair.server.writeInbound(bytes) }
        #expect(!pair.server.isActive)
        #expect(pair.serverCollector.inactive)
        #expect(pair.serverCollector.errors.isEmpty)
    }

    @Test func closeNotifyFromTheServerReachesTheClient() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        try pair.shuttle()
        _ = pair.send("bye", from: pair.server)
        pair.server.close(promise: nil)
        try pair.shuttle()
        #expect(pair.clientCollector.text == "bye")
        #expect(!pair.client.isActive)
        #expect(pair.clientCollector.errors.isEmpty)
    }

    @Test func halfCloseSendsCloseNotifyAndKeepsReading() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        try pair.shuttle()
        _ = pair.send("last words", from: pair.client)
        // Output half-close: the client sends close_notify but keeps its channel.
        let closed = pair.client.close(mode: .output)
        _ = closed
        try pair.shuttle()
        #expect(pair.serverCollector.text == "last words")
        #expect(!pair.server.isActive)
    }

    @Test func garbageInsteadOfAClientHelloIsRefusedAndCounted() throws {
        let fixture = try CertificateFixture()
        let counters = TLSCounters()
        let server = EmbeddedChannel()
        let collector = Collector()
        try server.pipeline.syncOperations.addHandlers([
            TLSHandler(context: fixture.serverContext(), counters: counters), collector,
        ])
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try server.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(!server.isActive)
        #expect(counters.failures["handshake_failed"] == 1)
        #expect(collector.errors.count == 1)
        #expect(collector.received.readableBytes == 0)
    }

    @Test func aConnectAndCloseProbeIsNotAnUnexpectedEOF() throws {
        let fixture = try CertificateFixture()
        for sendsPartOfAHello in [false, true] {
            let counters = TLSCounters()
            let server = EmbeddedChannel()
            try server.pipeline.syncOperations.addHandler(
                TLSHandler(context: fixture.serverContext(), counters: counters))
            try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            if sendsPartOfAHello { try server.writeInbound(ByteBuffer(bytes: [0x16, 0x03, 0x01])) }
            server.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            #expect(!server.isActive)
            if sendsPartOfAHello {
                #expect(counters.failures == ["unexpected_eof": 1])
            } else {
                #expect(counters.failures == ["closed_before_client_hello": 1])
            }
        }
    }

    @Test func silentClientIsClosedAtTheHandshakeTimeout() throws {
        let fixture = try CertificateFixture()
        let counters = TLSCounters()
        let loop = EmbeddedEventLoop()
        let server = EmbeddedChannel(loop: loop)
        try server.pipeline.syncOperations.addHandler(
            TLSHandler(context: fixture.serverContext(), handshakeTimeout: .seconds(5), counters: counters))
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        loop.advanceTime(by: .seconds(4))
        #expect(server.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!server.isActive)
        #expect(counters.failures["handshake_timeout"] == 1)
    }

    @Test func clientRefusesAServerItDoesNotTrust() throws {
        let fixture = try CertificateFixture()
        let other = try fixture.pair("other")
        let pair = try BackToBack(
            serverContext: fixture.serverContext(),
            clientConfiguration: .init(serverName: "localhost", verification: .trustRoots(path: other.certificatePath)))
        try pair.shuttle()
        #expect(pair.clientCollector.handshake == nil)
        #expect(!pair.client.isActive)
        let error = try #require(pair.clientCollector.errors.first as? TLSError)
        #expect(error.description.contains("certificate verify failed"))
    }

    @Test func clientTrustsTheGeneratedCertificateForLocalhost() throws {
        let fixture = try CertificateFixture()
        let server = try fixture.pair("server")
        let pair = try BackToBack(
            serverContext: TLSContext.server(.init(certificates: [server])),
            clientConfiguration: .init(serverName: "localhost", verification: .trustRoots(path: server.certificatePath))
        )
        try pair.shuttle()
        #expect(pair.clientCollector.handshake != nil)
    }

    @Test func tls13OnlyServerRefusesATLS12Client() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(
            serverContext: fixture.serverContext(minimumVersion: .tls13),
            clientConfiguration: .init(verification: .none, maximumVersion: .tls12))
        try pair.shuttle()
        #expect(pair.serverCollector.handshake == nil)
        #expect(pair.counters.failures["handshake_failed"] == 1)
    }

    @Test func sessionTicketsSharedThroughTicketKeysResumeOnAnotherContext() throws {
        let fixture = try CertificateFixture()
        let pairConfig = try fixture.pair("server")
        let keys = (0..<80).map { UInt8($0) }
        let first = try TLSContext.server(.init(certificates: [pairConfig], ticketKeys: [keys]))
        let second = try TLSContext.server(.init(certificates: [pairConfig], ticketKeys: [keys]))
        // Resumption is exercised end to end with Python in TLSRealPeerTests; here both contexts accept the keys.
        let pair = try BackToBack(serverContext: first)
        try pair.shuttle()
        #expect(pair.serverCollector.handshake != nil)
        let pair2 = try BackToBack(serverContext: second)
        try pair2.shuttle()
        #expect(pair2.serverCollector.handshake != nil)
        #expect(throws: TLSError.self) {
            try TLSContext.server(.init(certificates: [pairConfig], ticketKeys: [[1, 2, 3]]))
        }
    }
}

@Suite struct TLSContextTests {
    @Test func aKeyThatDoesNotMatchIsRefusedWithBothFiles() throws {
        let fixture = try CertificateFixture()
        let a = try fixture.pair("a")
        let b = try fixture.pair("b")
        do {
            _ = try TLSContext.server(
                .init(certificates: [.init(certificatePath: a.certificatePath, keyPath: b.keyPath)]))
            Issue.record("expected a key mismatch")
        } catch let error as TLSError {
            #expect(error.code == .keyMismatch)
            #expect(error.message.contains(b.keyPath))
        }
    }

    @Test func aMissingCertificateIsAnErrorNotACrash() throws {
        do {
            _ = try TLSContext.server(
                .init(certificates: [.init(certificatePath: "/nonexistent.pem", keyPath: "/nonexistent.key")]))
            Issue.record("expected an error")
        } catch let error as TLSError {
            #expect(error.code == .invalidCertificate)
            #expect(!error.openSSLErrors.isEmpty)
        }
    }

    /// Reload keeps the old context when the new files are bad: building a context is all-or-nothing.
    @Test func aFailedRebuildLeavesTheOldContextUsable() throws {
        let fixture = try CertificateFixture()
        let good = try fixture.serverContext()
        try "not a certificate".write(toFile: fixture.path("server.crt"), atomically: true, encoding: .utf8)
        #expect(throws: TLSError.self) { try fixture.serverContext() }
        let pair = try BackToBack(serverContext: good)
        try pair.shuttle()
        #expect(pair.serverCollector.handshake != nil)
    }
}

@Suite struct SelfSignedCertificateTests {
    @Test func generatesOnceWithAPrivateKeyAndReusesIt() throws {
        let fixture = try CertificateFixture()
        let certificate = fixture.path("state/tls/selfsigned.crt")
        let key = fixture.path("state/tls/selfsigned.key")
        #expect(try SelfSignedCertificate.ensure(certificatePath: certificate, keyPath: key))
        let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let before = try Data(contentsOf: URL(fileURLWithPath: certificate))
        #expect(try !SelfSignedCertificate.ensure(certificatePath: certificate, keyPath: key))
        #expect(try Data(contentsOf: URL(fileURLWithPath: certificate)) == before)
        #expect(TLSCertificateInspector.inspect(certificatePath: certificate, keyPath: key).isEmpty)
    }

    @Test func certificateNamesLocalhostAndLoopbackAddresses() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else {
            print("skipped: openssl is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let pair = try fixture.pair("s")
        let result = try run("/usr/bin/openssl", ["x509", "-in", pair.certificatePath, "-noout", "-text"])
        #expect(result.contains("DNS:localhost"))
        #expect(result.contains("IP Address:127.0.0.1"))
        #expect(result.contains("IP Address:0:0:0:0:0:0:0:1"))
        #expect(result.contains("prime256v1") || result.contains("P-256"))
    }
}

@Suite struct CertificateInspectorTests {
    @Test func missingFilesAreReportedWithTheirPaths() {
        let problems = TLSCertificateInspector.inspect(
            certificatePath: "/nonexistent/c.pem", keyPath: "/nonexistent/k.pem")
        #expect(problems.map(\.file) == ["/nonexistent/c.pem", "/nonexistent/k.pem"])
        #expect(problems.allSatisfy { $0.message.contains("No such file") })
    }

    @Test func keyMismatchIsAnError() throws {
        let fixture = try CertificateFixture()
        let a = try fixture.pair("a")
        let b = try fixture.pair("b")
        let problems = TLSCertificateInspector.inspect(certificatePath: a.certificatePath, keyPath: b.keyPath)
        #expect(problems.count == 1)
        #expect(problems[0].severity == .error)
        #expect(problems[0].message.contains("does not match"))
    }

    @Test func notPEMIsAnError() throws {
        let fixture = try CertificateFixture()
        let a = try fixture.pair("a")
        try "hello".write(toFile: fixture.path("junk.pem"), atomically: true, encoding: .utf8)
        let problems = TLSCertificateInspector.inspect(certificatePath: fixture.path("junk.pem"), keyPath: a.keyPath)
        #expect(problems.count == 1)
        #expect(problems[0].message.contains("no PEM certificate"))
    }

    @Test func expiredCertificateIsAWarning() throws {
        // OpenSSL 3.0's CLI cannot back-date a certificate; Python's cryptography package can.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/env"),
            (try? run("/usr/bin/env", ["python3", "-c", "import cryptography"]))?.isEmpty == true
        else {
            print("skipped: python3 with the cryptography package is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let key = fixture.path("old.key")
        let certificate = fixture.path("old.crt")
        let script = """
            import datetime, sys
            from cryptography import x509
            from cryptography.x509.oid import NameOID
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1))
                .not_valid_after(datetime.datetime(2020, 2, 1)).sign(key, hashes.SHA256()))
            open(sys.argv[1], "wb").write(key.private_bytes(serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            open(sys.argv[2], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
            """
        try run("/usr/bin/env", ["python3", "-c", script, key, certificate])
        let problems = TLSCertificateInspector.inspect(certificatePath: certificate, keyPath: key)
        #expect(problems.count == 1, "\(problems)")
        #expect(problems.first?.severity == .warning)
        #expect(problems.first?.message.contains("expired") == true)
    }

    @Test func chainInTheWrongOrderIsAnError() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else {
            print("skipped: openssl is not installed")
            return
        }
        let fixture = try CertificateFixture()
        let openssl = "/usr/bin/openssl"
        let ca = try fixture.pair("ca")
        _ = try run(openssl, ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", fixture.path("leaf.key")])
        _ = try run(
            openssl,
            ["req", "-new", "-key", fixture.path("leaf.key"), "-out", fixture.path("leaf.csr"), "-subj", "/CN=leaf"])
        _ = try run(
            openssl,
            [
                "x509", "-req", "-in", fixture.path("leaf.csr"), "-CA", ca.certificatePath, "-CAkey", ca.keyPath,
                "-CAcreateserial", "-out", fixture.path("leaf.crt"), "-days", "30",
            ])
        let leaf = try String(contentsOfFile: fixture.path("leaf.crt"), encoding: .utf8)
        let caPEM = try String(contentsOfFile: ca.certificatePath, encoding: .utf8)
        try (leaf + caPEM).write(toFile: fixture.path("good.pem"), atomically: true, encoding: .utf8)
        try (caPEM + leaf).write(toFile: fixture.path("bad.pem"), atomically: true, encoding: .utf8)
        #expect(
            TLSCertificateInspector.inspect(
                certificatePath: fixture.path("good.pem"), keyPath: fixture.path("leaf.key")
            ).isEmpty)
        let problems = TLSCertificateInspector.inspect(
            certificatePath: fixture.path("bad.pem"), keyPath: fixture.path("leaf.key"))
        #expect(problems.contains { $0.message.contains("chain out of order") })
    }
}

@discardableResult
func run(_ executable: String, _ arguments: [String], input: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try? stdin.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

@Suite struct CertificateSummaryTests {
    @Test func theGeneratedCertificateIsSummarizedWithItsNamesIssuerAndExpiry() throws {
        let fixture = try CertificateFixture()
        let certificate = fixture.path("generated.crt")
        _ = try SelfSignedCertificate.ensure(certificatePath: certificate, keyPath: fixture.path("generated.key"))
        let summary = try #require(TLSCertificateInspector.summarize(certificatePath: certificate))
        #expect(summary.names == ["localhost", "127.0.0.1", "::1"])
        #expect(summary.issuer == summary.subject && summary.issuer.contains("CN=localhost"))
        let days = (summary.notAfter - Date().timeIntervalSince1970) / 86400
        #expect(days > 360 && days < 370)
        #expect(TLSCertificateInspector.summarize(certificatePath: fixture.path("missing.crt")) == nil)
    }
}

@Suite struct CertificateExpiryWarningTests {
    @Test func aLeafExpiringWithinFourteenDaysIsAWarningAndAYearIsNot() throws {
        guard let openssl = ["/usr/bin/openssl"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { return }
        let fixture = try CertificateFixture()
        for days in [5, 365] {
            let base = fixture.path("d\(days)")
            _ = try run(
                openssl,
                [
                    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    "\(base).key", "-out", "\(base).crt", "-subj", "/CN=soon", "-days", "\(days)",
                ])
            let problems = TLSCertificateInspector.inspect(certificatePath: "\(base).crt", keyPath: "\(base).key")
            if days == 5 {
                #expect(problems.count == 1)
                let message = problems.first?.message ?? ""
                #expect(
                    message == "the certificate (/CN=soon) expires in 4 days: renew it"
                        || message == "the certificate (/CN=soon) expires in 5 days: renew it", "\(message)")
                #expect(problems.first?.severity == .warning)
            } else {
                #expect(problems.isEmpty, "\(problems)")
            }
        }
    }
}
