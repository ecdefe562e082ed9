import Foundation
import Testing

@testable import FerryConfig

/// A minimal valid file, extended per test.
let minimalConfig = """
    [[listen]]
    name = "http"
    address = "127.0.0.1:8080"

    [[backend]]
    name = "tts"
    address = "127.0.0.1:8001"

    [[route]]
    path = "/"
    backend = "tts"

    """

func load(_ source: String, checkFiles: Bool = false) throws(ConfigurationError) -> LoadedConfiguration {
    try ConfigurationLoader.load(source: source, fileName: "test.toml", options: .init(checkFiles: checkFiles))
}

/// The diagnostics of a file that must fail to load.
func errors(_ source: String, checkFiles: Bool = false) -> [ConfigurationDiagnostic] {
    do {
        _ = try load(source, checkFiles: checkFiles)
        Issue.record("expected the configuration to be refused")
        return []
    } catch {
        return error.diagnostics
    }
}

@Suite struct ParsingTests {
    @Test func minimalConfigLoadsWithDefaults() throws {
        let loaded = try load(minimalConfig)
        let config = loaded.configuration
        #expect(
            config.listeners == [ListenerConfiguration(name: "http", address: .inet(host: "127.0.0.1", port: 8080))])
        #expect(config.backends.first?.kind == .external)
        #expect(config.routes.first?.action == .proxy(backend: "tts"))
        #expect(config.routes.first?.protocol == .auto)
        #expect(config.master == MasterSettings())
        #expect(config.pool == PoolSettings())
        #expect(config.limits == LimitSettings())
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.source == minimalConfig)
    }

    @Test func masterSectionIsRead() throws {
        let config = try load(
            """
            [master]
            workers = 3
            user = "ferry"
            group = "ferry"
            control_socket = "/run/x.sock"
            control_socket_mode = "0660"
            control_socket_group = "adm"
            state_dir = "/var/lib/x"
            graceful_timeout = "5s"
            heartbeat_interval = "500ms"
            log_level = "debug"
            log_format = "json"
            access_log = "off"
            log_file = "/var/log/ferry.log"
            """ + "\n" + minimalConfig
        ).configuration.master
        #expect(config.workers == .fixed(3))
        #expect(config.user == "ferry")
        #expect(config.controlSocketMode == 0o660)
        #expect(config.controlSocketGroup == "adm")
        #expect(config.gracefulTimeout == .seconds(5))
        #expect(config.heartbeatInterval == .milliseconds(500))
        #expect(config.logLevel == .debug)
        #expect(config.logFormat == .json)
        #expect(config.accessLog == .off)
        #expect(config.logFile == "/var/log/ferry.log")
    }

    @Test func workersAcceptsAuto() throws {
        let config = try load("[master]\nworkers = \"auto\"\n" + minimalConfig).configuration
        #expect(config.master.workers == .auto)
    }

    @Test func listenerAddressesParse() throws {
        let config = try load(
            """
            [[listen]]
            name = "v6"
            address = "[::]:443"
            backlog = 1024
            [[listen]]
            name = "sd"
            address = "systemd:https"
            [[backend]]
            name = "b"
            address = "unix:/run/app.sock"
            [[route]]
            path = "/"
            backend = "b"
            """
        ).configuration
        #expect(config.listeners[0].address == .inet(host: "::", port: 443))
        #expect(config.listeners[0].backlog == 1024)
        #expect(config.listeners[1].address == .systemd(name: "https"))
        #expect(config.backends[0].address == .unix(path: "/run/app.sock"))
    }

    @Test func tlsWithSNICertificates() throws {
        let config = try load(
            """
            [[listen]]
            name = "https"
            address = "0.0.0.0:443"
            [listen.tls]
            certificate = "/c.pem"
            key = "/k.pem"
            min_version = "1.3"
            alpn = ["http/1.1"]
            handshake_timeout = "3s"
            [[listen.tls.sni]]
            certificate = "/a.pem"
            key = "/a.key"
            server_names = ["a.example", "*.a.example"]
            [[backend]]
            name = "b"
            address = "127.0.0.1:1"
            [[route]]
            path = "/"
            backend = "b"
            """
        ).configuration
        let tls = try #require(config.listeners[0].tls)
        #expect(tls.minimumVersion == .tls13)
        #expect(tls.handshakeTimeout == .seconds(3))
        #expect(tls.certificates.count == 2)
        #expect(tls.certificates[0] == CertificateConfiguration(certificatePath: "/c.pem", keyPath: "/k.pem"))
        #expect(tls.certificates[1].serverNames == ["a.example", "*.a.example"])
    }

    @Test func builtinBackendsCarryTheirOptions() throws {
        let config = try load(
            """
            [[listen]]
            name = "h"
            address = "127.0.0.1:1"
            [[backend]]
            name = "tts"
            builtin = "websocket"
            address = "127.0.0.1:8001"
            results_dir = "/r"
            results_max_bytes = "1MiB"
            max_message_bytes = 4096
            messages_per_second = 5
            idle_timeout = "10s"
            [[backend]]
            name = "files"
            builtin = "static"
            address = "127.0.0.1:8002"
            root = "/srv"
            cache_control = "no-cache"
            index = ""
            demo_page = true
            [[route]]
            path = "/"
            backend = "files"
            """
        ).configuration
        #expect(
            config.backends[0].kind
                == .builtinWebSocket(
                    WebSocketServiceOptions(
                        resultsDirectory: "/r", resultsMaxBytes: 1 << 20, maxMessageBytes: 4096, messagesPerSecond: 5,
                        idleTimeout: .seconds(10))))
        #expect(
            config.backends[1].kind
                == .builtinStatic(
                    StaticServiceOptions(root: "/srv", cacheControl: "no-cache", index: nil, demoPage: true)))
    }

    @Test func commandBackendWithRestartAndReadiness() throws {
        let config = try load(
            """
            [[listen]]
            name = "h"
            address = "127.0.0.1:1"
            [[backend]]
            name = "app"
            command = ["python3", "app.py"]
            env = { A = "1" }
            cwd = "/srv"
            address = "127.0.0.1:8003"
            [backend.restart]
            mode = "on-failure"
            initial_backoff = "50ms"
            max_backoff = "2s"
            crash_loop_limit = 3
            crash_loop_window = "10s"
            [backend.readiness]
            http_path = "/healthz"
            timeout = "5s"
            [[route]]
            path = "/"
            backend = "app"
            """
        ).configuration
        let backend = config.backends[0]
        #expect(
            backend.kind
                == .command(
                    CommandSpec(argv: ["python3", "app.py"], environment: ["A": "1"], workingDirectory: "/srv")))
        #expect(
            backend.restart
                == RestartPolicy(
                    mode: .onFailure, initialBackoff: .milliseconds(50), maxBackoff: .seconds(2), crashLoopLimit: 3,
                    crashLoopWindow: .seconds(10)))
        #expect(backend.readiness == ReadinessCheck(httpPath: "/healthz", timeout: .seconds(5)))
        #expect(backend.spawnArguments == ["python3", "app.py"])
    }

    @Test func routesRespondRedirectAndRewrite() throws {
        let config = try load(
            minimalConfig + """
                [[route]]
                path = "/admin"
                respond = 403
                body = "no"
                [[route]]
                path = "/old"
                redirect = "https://example.org/"
                status = 308
                [[route]]
                path = "/api/v1"
                backend = "tts"
                rewrite = "/v1"
                protocol = "http"
                connect_timeout = "1s"
                response_timeout = "2s"
                """
        ).configuration
        #expect(config.routes[1].action == .respond(status: 403, body: "no"))
        #expect(config.routes[2].action == .redirect(location: "https://example.org/", status: 308))
        #expect(config.routes[3].rewrite == "/v1")
        #expect(config.routes[3].protocol == .http)
        #expect(config.routes[3].timeouts == RouteTimeouts(connect: .seconds(1), response: .seconds(2)))
    }

    @Test func routePathsAreNormalized() throws {
        let config = try load(minimalConfig.replacing("path = \"/\"", with: "path = \"//tts-ws//tts\""))
        #expect(config.configuration.routes[0].path == "/tts-ws/tts")
    }

    @Test func poolAndLimitsSections() throws {
        let config = try load(
            minimalConfig + """
                [pool]
                max_idle_per_backend = 8
                idle_timeout = "30s"
                max_requests_per_connection = 50
                [limits]
                max_header_bytes = "8KiB"
                max_header_count = 50
                max_body_bytes = "1MiB"
                header_timeout = "2s"
                body_timeout = "3s"
                idle_timeout = "4s"
                max_connections_per_worker = 100
                websocket_idle_timeout = "60s"
                """
        ).configuration
        #expect(
            config.pool == PoolSettings(maxIdlePerBackend: 8, idleTimeout: .seconds(30), maxRequestsPerConnection: 50))
        #expect(
            config.limits
                == LimitSettings(
                    maxHeaderBytes: 8192, maxHeaderCount: 50, maxBodyBytes: 1 << 20, headerTimeout: .seconds(2),
                    bodyTimeout: .seconds(3), idleTimeout: .seconds(4), maxConnectionsPerWorker: 100,
                    websocketIdleTimeout: .seconds(60)))
    }

    @Test func syntaxErrorsCarryTOMLKitsPosition() {
        let diagnostics = errors("[master]\nworkers = = 3\n")
        #expect(diagnostics.count == 1)
        #expect(diagnostics[0].line == 2)
        #expect(diagnostics[0].message.contains("TOML syntax"))
    }

    @Test func missingFileIsReportedNotThrownAsCrash() {
        do {
            _ = try ConfigurationLoader.load(contentsOf: "/nonexistent/ferry.toml")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("/nonexistent/ferry.toml:1:1"))
            #expect(error.description.contains("No such file"))
        }
    }
}

@Suite struct ValueParserTests {
    @Test(arguments: [
        ("30s", Duration.seconds(30)), ("500ms", .milliseconds(500)), ("2m", .seconds(120)), ("1h", .seconds(3600)),
        ("1.5s", .milliseconds(1500)), ("0s", .zero), ("250us", .microseconds(250)),
    ])
    func durations(text: String, expected: Duration) throws {
        #expect(try ConfigValue.duration(text).get() == expected)
    }

    @Test(arguments: ["30", "s", "-1s", "1d", "fast", ""])
    func badDurations(text: String) {
        #expect(throws: ConfigValue.ParseFailure.self) { try ConfigValue.duration(text).get() }
    }

    @Test(arguments: [
        ("16KiB", 16384), ("1MiB", 1_048_576), ("2GiB", 2_147_483_648), ("512", 512), ("64KB", 64000), ("10B", 10),
    ])
    func sizes(text: String, expected: Int) throws {
        #expect(try ConfigValue.size(text).get() == expected)
    }

    @Test(arguments: ["16XB", "KiB", "-5", "lots"])
    func badSizes(text: String) {
        #expect(throws: ConfigValue.ParseFailure.self) { try ConfigValue.size(text).get() }
    }

    @Test func listenAddresses() throws {
        #expect(try ConfigValue.listenAddress("0.0.0.0:443").get() == .inet(host: "0.0.0.0", port: 443))
        #expect(try ConfigValue.listenAddress("[::1]:0").get() == .inet(host: "::1", port: 0))
        #expect(try ConfigValue.listenAddress("systemd:https").get() == .systemd(name: "https"))
        for bad in ["localhost:443", "1.2.3.4", "1.2.3.4:70000", "[::1]443", "systemd:", ":443"] {
            #expect(throws: ConfigValue.ParseFailure.self, "\(bad)") { try ConfigValue.listenAddress(bad).get() }
        }
    }

    @Test func backendAddresses() throws {
        #expect(try ConfigValue.backendAddress("localhost:8001").get() == .inet(host: "localhost", port: 8001))
        #expect(try ConfigValue.backendAddress("[::1]:8001").get() == .inet(host: "::1", port: 8001))
        #expect(try ConfigValue.backendAddress("unix:/run/a.sock").get() == .unix(path: "/run/a.sock"))
        for bad in ["unix:relative.sock", "host", "host:0", "ho st:80", "[zz]:80"] {
            #expect(throws: ConfigValue.ParseFailure.self, "\(bad)") { try ConfigValue.backendAddress(bad).get() }
        }
    }

    @Test func durationMilliseconds() {
        #expect(Duration.milliseconds(1500).wholeMilliseconds == 1500)
        #expect(Duration.seconds(300).wholeMilliseconds == 300_000)
    }
}

/// `[http2]` and ALPN (issue 16): h2 is offered by default, the limits are read, bad values are
/// refused with their line.
@Suite struct HTTP2ConfigurationTests {
    static let tlsListener = """
        [[listen]]
        name = "https"
        address = "127.0.0.1:8443"
        [listen.tls]
        certificate = "/etc/ferry/cert.pem"
        key = "/etc/ferry/key.pem"

        [[backend]]
        name = "tts"
        address = "127.0.0.1:8001"

        [[route]]
        path = "/"
        backend = "tts"

        """

    @Test func h2IsOfferedByDefaultAndTheLimitsAreRead() throws {
        let defaults = try load(Self.tlsListener).configuration
        #expect(defaults.listeners[0].tls?.alpn == ["h2", "http/1.1"])
        #expect(defaults.http2 == HTTP2Settings())
        let tuned = try load(
            Self.tlsListener + """
                [http2]
                max_concurrent_streams = 50
                header_table_size = "8KiB"
                max_resets = 10
                reset_window = "5s"
                max_continuation_frames = 2
                max_control_frames = 20
                control_frame_window = "10s"
                send_timeout = "5s"
                """
        ).configuration.http2
        #expect(
            tuned
                == HTTP2Settings(
                    maxConcurrentStreams: 50, headerTableSize: 8192, maxResets: 10, resetWindow: .seconds(5),
                    maxContinuationFrames: 2, maxControlFrames: 20, controlFrameWindow: .seconds(10),
                    sendTimeout: .seconds(5)))
    }

    @Test func badValuesAreRefusedWithTheirLine() {
        let refused = errors(
            Self.tlsListener + """
                [http2]
                max_concurrent_streams = 0
                reset_window = "10ms"
                header_table_size = "2MiB"
                bogus = 1
                """)
        let lines = Dictionary(refused.map { ($0.keyPath, $0.line) }, uniquingKeysWith: { first, _ in first })
        #expect(lines["http2.max_concurrent_streams"] == 16, "\(refused)")
        #expect(lines["http2.reset_window"] == 17, "\(refused)")
        #expect(lines["http2.header_table_size"] == 18, "\(refused)")
        #expect(refused.contains { $0.message.contains("unknown key 'bogus'") }, "\(refused)")
        let alpn = errors(
            Self.tlsListener.replacing(
                "key = \"/etc/ferry/key.pem\"", with: "key = \"/etc/ferry/key.pem\"\nalpn = [\"h2\"]"))
        #expect(alpn.contains { $0.keyPath == "listen[1].tls.alpn" && $0.message.contains("http/1.1") }, "\(alpn)")
        let unknown = errors(
            Self.tlsListener.replacing(
                "key = \"/etc/ferry/key.pem\"", with: "key = \"/etc/ferry/key.pem\"\nalpn = [\"h3\", \"http/1.1\"]"))
        #expect(unknown.contains { $0.message.contains("'h3' is not supported") }, "\(unknown)")
    }
}

/// `redirect_to_https` (issue 17, item 3): on plain listeners only, to the first TLS listener's
/// port unless `redirect_port` says otherwise, and not linted as clear-text traffic.
@Suite struct RedirectListenerTests {
    static let plain = """

        [[listen]]
        name = "http"
        address = "0.0.0.0:8080"
        redirect_to_https = true

        """

    @Test func aPlainListenerRedirectsToTheFirstTLSPort() throws {
        let loaded = try load(HTTP2ConfigurationTests.tlsListener + Self.plain)
        #expect(loaded.configuration.listeners[1].redirectToHTTPSPort == 8443)
        #expect(loaded.configuration.listeners[0].redirectToHTTPSPort == nil)
        #expect(!loaded.warnings.contains { $0.message.contains("has no TLS") }, "\(loaded.warnings)")
        let explicit = try load(HTTP2ConfigurationTests.tlsListener + Self.plain + "redirect_port = 443\n")
        #expect(explicit.configuration.listeners[1].redirectToHTTPSPort == 443)
    }

    @Test func misplacedRedirectsAreRefused() {
        let onTLS = errors(
            HTTP2ConfigurationTests.tlsListener.replacing(
                "key = \"/etc/ferry/key.pem\"",
                with:
                    "key = \"/etc/ferry/key.pem\"\n[[listen]]\nname = \"x\"\naddress = \"127.0.0.1:1\"\n[listen.tls]\ncertificate = \"/c\"\nkey = \"/k\"\nredirect_to_https = true"
            ))
        #expect(
            onTLS.contains {
                $0.message.contains("unknown key 'redirect_to_https'") || $0.message.contains("without [listen.tls]")
            }, "\(onTLS)")
        let portAlone = errors(
            HTTP2ConfigurationTests.tlsListener
                + Self.plain.replacing("redirect_to_https = true", with: "redirect_port = 443"))
        #expect(portAlone.contains { $0.keyPath == "listen[2].redirect_port" }, "\(portAlone)")
        let nowhere = errors(minimalConfig + Self.plain)
        #expect(nowhere.contains { $0.message.contains("no TLS listener") }, "\(nowhere)")
    }
}
