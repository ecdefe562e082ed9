import Foundation
import Testing

@testable import FerryConfig

@Suite struct ValidationTests {
    /// The issue's acceptance case: a typo'd backend, an unknown key, a bad duration and a missing
    /// certificate, each named with file:line in one run.
    @Test func everyProblemOfAFileIsReportedWithItsLine() {
        let source = """
            [master]
            graceful_timeout = "30"
            colour = "blue"

            [[listen]]
            name = "https"
            address = "0.0.0.0:443"
            [listen.tls]
            certificate = "/nonexistent/cert.pem"
            key = "/nonexistent/key.pem"

            [[backend]]
            name = "tts"
            address = "127.0.0.1:8001"

            [[backend]]
            name = "files"
            address = "127.0.0.1:8002"

            [[route]]
            path = "/"
            backend = "files"

            [[route]]
            path = "/tts-ws"
            backend = "ttss"
            """
        let diagnostics = errors(source, checkFiles: true)
        let rendered = diagnostics.map(\.description)
        #expect(
            rendered.contains { $0.hasPrefix("test.toml:2:1: error: master.graceful_timeout: '30' is not a duration") })
        #expect(rendered.contains { $0.hasPrefix("test.toml:3:1: error: master.colour: unknown key 'colour'") })
        #expect(rendered.contains { $0.hasPrefix("test.toml:9:1: error: listen[1].tls.certificate: cannot read") })
        #expect(rendered.contains { $0.hasPrefix("test.toml:10:1: error: listen[1].tls.key: cannot read") })
        #expect(
            rendered.contains(
                "test.toml:26:1: error: route[2].backend: no backend named 'ttss' (known: tts, files)"))
        #expect(diagnostics.count == 5)
    }

    @Test func unknownKeysNameTheValidOnes() {
        let diagnostics = errors(minimalConfig + "[pool]\nmax_idle = 3\n")
        #expect(diagnostics.count == 1)
        #expect(diagnostics[0].message.contains("unknown key 'max_idle'"))
        #expect(diagnostics[0].message.contains("max_idle_per_backend"))
    }

    @Test func unknownTopLevelTable() {
        let diagnostics = errors(minimalConfig + "[upstream]\nx = 1\n")
        #expect(diagnostics.first?.keyPath == "upstream")
    }

    @Test func wrongTypesAreReported() {
        let diagnostics = errors(minimalConfig + "[pool]\nmax_idle_per_backend = \"many\"\n")
        #expect(diagnostics.first?.message == "expected an integer, found string")
    }

    @Test func duplicateNames() {
        let diagnostics = errors(
            minimalConfig + """
                [[listen]]
                name = "http"
                address = "127.0.0.1:8081"
                [[backend]]
                name = "tts"
                address = "127.0.0.1:8009"
                """)
        #expect(diagnostics.map(\.keyPath).sorted() == ["backend[2].name", "listen[2].name"])
    }

    @Test func duplicateRoutePathsAfterNormalization() {
        let diagnostics = errors(minimalConfig + "[[route]]\npath = \"//\"\nbackend = \"tts\"\n")
        #expect(diagnostics.map(\.keyPath) == ["route[2].path"])
        #expect(diagnostics[0].message.contains("also route[1]"))
    }

    /// A path may repeat across sites, not within one; every bad host is named with its line.
    @Test func routeHostsAreValidatedAndPathsAreUniquePerSite() throws {
        let sites = try load(
            minimalConfig + """
                [[route]]
                path = "/"
                hosts = ["A.Example.", "*.a.example"]
                backend = "tts"

                [[route]]
                path = "/"
                hosts = ["b.example"]
                backend = "tts"
                """)
        #expect(sites.configuration.routes[1].hosts == ["a.example", "*.a.example"])
        let duplicate = errors(
            minimalConfig + """
                [[route]]
                path = "/x"
                hosts = ["a.example"]
                backend = "tts"

                [[route]]
                path = "/x"
                hosts = ["b.example", "a.example"]
                backend = "tts"
                """)
        #expect(duplicate.map(\.keyPath) == ["route[3].path"])
        #expect(duplicate.first?.message.contains("for host 'a.example' (also route[2])") == true)
        for (hosts, message) in [
            ("[\"example.org:443\"]", "not a host name"), ("[\"https://x\"]", "not a host name"),
            ("[\"a.*.org\"]", "not a host name"), ("[\"a.org\", \"A.org\"]", "listed twice"),
            ("[]", "leave hosts out"),
        ] {
            let bad = errors(minimalConfig + "[[route]]\npath = \"/y\"\nhosts = \(hosts)\nbackend = \"tts\"\n")
            #expect(bad.map(\.keyPath) == ["route[2].hosts"], "\(hosts)")
            #expect(bad.first?.message.contains(message) == true, "\(hosts): \(bad)")
            #expect(bad.first?.description.contains("test.toml:14:") == true, "\(hosts): \(bad.map(\.description))")
        }
    }

    /// A name with a site of its own does not get a wildcard site's routes: said per route.
    @Test func aSiteShadowingAWildcardsRouteIsLinted() throws {
        let loaded = try load(
            minimalConfig + """
                [[route]]
                path = "/api/"
                hosts = ["*.example.org"]
                backend = "tts"

                [[route]]
                path = "/"
                hosts = ["*.example.org", "www.example.org"]
                backend = "tts"

                [[route]]
                path = "/"
                hosts = ["admin.example.org"]
                backend = "tts"
                """)
        let shadowing = loaded.warnings.filter { $0.message.contains("has routes of its own") }
        // /api/ reaches neither www nor admin; "/" is redefined by both (www lists it, admin has its own).
        #expect(shadowing.map(\.keyPath) == ["route[2].hosts", "route[2].hosts"])
        #expect(shadowing.contains { $0.message.contains("'admin.example.org'") })
        #expect(shadowing.contains { $0.message.contains("'www.example.org'") })
    }

    @Test func routeWithoutActionOrWithTwo() {
        let none = errors(minimalConfig + "[[route]]\npath = \"/x\"\n")
        #expect(none.first?.message.contains("needs one of backend") == true)
        let two = errors(minimalConfig + "[[route]]\npath = \"/x\"\nbackend = \"tts\"\nrespond = 403\n")
        #expect(two.first?.message.contains("only one of") == true)
    }

    @Test func stripPrefixMustBeAPrefixAndExcludesRewrite() {
        let notPrefix = errors(minimalConfig + "[[route]]\npath = \"/a/b\"\nbackend = \"tts\"\nstrip_prefix = \"/c\"\n")
        #expect(notPrefix.map(\.keyPath) == ["route[2].strip_prefix"])
        let both = errors(
            minimalConfig + "[[route]]\npath = \"/a/b\"\nbackend = \"tts\"\nstrip_prefix = \"/a\"\nrewrite = \"/z\"\n")
        #expect(both.map(\.keyPath) == ["route[2].rewrite"])
    }

    @Test func redirectStatusMustBeARedirect() {
        let diagnostics = errors(minimalConfig + "[[route]]\npath = \"/x\"\nredirect = \"/y\"\nstatus = 304\n")
        #expect(diagnostics.first?.keyPath == "route[2].status")
    }

    @Test func badAddressesAreErrors() {
        let diagnostics = errors(
            minimalConfig.replacing("127.0.0.1:8080", with: "localhost:8080").replacing(
                "127.0.0.1:8001", with: "127.0.0.1"))
        #expect(diagnostics.map(\.keyPath).sorted() == ["backend[1].address", "listen[1].address"])
    }

    @Test func builtinWithOptionsOfTheOtherKind() {
        let diagnostics = errors(
            """
            [[listen]]
            name = "h"
            address = "127.0.0.1:1"
            [[backend]]
            name = "tts"
            builtin = "websocket"
            address = "127.0.0.1:8001"
            root = "/srv"
            [[route]]
            path = "/"
            backend = "tts"
            """)
        #expect(diagnostics.map(\.keyPath) == ["backend[1].root"])
        #expect(diagnostics[0].message.contains("builtin = \"static\""))
    }

    @Test func builtinOptionsOnAnExternalBackend() {
        let diagnostics = errors(
            minimalConfig.replacing(
                "address = \"127.0.0.1:8001\"", with: "address = \"127.0.0.1:8001\"\nresults_dir = \"/r\""))
        #expect(diagnostics.map(\.keyPath) == ["backend[1].results_dir"])
    }

    @Test func staticBackendNeedsRoot() {
        let diagnostics = errors(
            minimalConfig.replacing("name = \"tts\"", with: "name = \"tts\"\nbuiltin = \"static\""))
        #expect(diagnostics.first?.message.contains("missing required key 'root'") == true)
    }

    @Test func unknownBuiltinAndBothBuiltinAndCommand() {
        let unknown = errors(minimalConfig.replacing("name = \"tts\"", with: "name = \"tts\"\nbuiltin = \"php\""))
        #expect(unknown.first?.message.contains("valid: \"websocket\", \"static\"") == true)
        let both = errors(
            minimalConfig.replacing(
                "name = \"tts\"", with: "name = \"tts\"\nbuiltin = \"websocket\"\ncommand = [\"x\"]"))
        #expect(both.first?.message.contains("not both") == true)
    }

    @Test func envAndCwdOnlyForCommands() {
        let diagnostics = errors(minimalConfig.replacing("name = \"tts\"", with: "name = \"tts\"\ncwd = \"/srv\""))
        #expect(diagnostics.map(\.keyPath) == ["backend[1].cwd"])
    }

    @Test func restartOnlyForSpawnedBackends() {
        let diagnostics = errors(
            minimalConfig.replacing("[[route]]", with: "[backend.restart]\nmode = \"always\"\n[[route]]"))
        #expect(diagnostics.map(\.keyPath) == ["backend[1].restart"])
    }

    @Test func twoSpawnedBackendsOnOneAddress() {
        let diagnostics = errors(
            """
            [[listen]]
            name = "h"
            address = "127.0.0.1:1"
            [[backend]]
            name = "a"
            command = ["a"]
            address = "127.0.0.1:9000"
            [[backend]]
            name = "b"
            command = ["b"]
            address = "127.0.0.1:9000"
            [[route]]
            path = "/"
            backend = "a"
            """)
        #expect(diagnostics.map(\.keyPath) == ["backend[2].address"])
    }

    @Test func outOfRangeAndBadEnums() {
        let diagnostics = errors(
            "[master]\nworkers = 0\nlog_level = \"loud\"\ncontrol_socket_mode = \"999\"\n" + minimalConfig)
        #expect(
            diagnostics.map(\.keyPath).sorted() == ["master.control_socket_mode", "master.log_level", "master.workers"])
        #expect(diagnostics.contains { $0.message.contains("valid: \"trace\"") })
    }

    @Test func aListenerIsRequired() {
        let diagnostics = errors("[[backend]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n")
        #expect(diagnostics.first?.message == "at least one [[listen]] is required")
    }

    @Test func selfSignedCertificatesMayNotExistYet() throws {
        let source = minimalConfig.replacing(
            "address = \"127.0.0.1:8080\"",
            with:
                "address = \"127.0.0.1:8080\"\n[listen.tls]\ncertificate = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\nself_signed = true"
        )
        _ = try load(source, checkFiles: true)
    }

    @Test func unreadableCertificateIsAnErrorEvenWhenSelfSigned() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-cert-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // A directory in place of the key file cannot be read as a file.
        let cert = dir.appendingPathComponent("c.pem").path
        let key = dir.appendingPathComponent("k.pem/inner").path
        try "x".write(toFile: cert, atomically: true, encoding: .utf8)
        try "x".write(toFile: dir.appendingPathComponent("k.pem").path, atomically: true, encoding: .utf8)
        let source = minimalConfig.replacing(
            "address = \"127.0.0.1:8080\"",
            with:
                "address = \"127.0.0.1:8080\"\n[listen.tls]\ncertificate = \"\(cert)\"\nkey = \"\(key)\"\nself_signed = true"
        )
        let diagnostics = errors(source, checkFiles: true)
        #expect(diagnostics.map(\.keyPath) == ["listen[1].tls.key"])
    }
}

@Suite struct LintTests {
    /// The seed's naive config: one WebSocket-only route for the whole prefix, in front of a Tornado
    /// app that also serves files under it.
    static let seedConfig = """
        [[listen]]
        name = "https"
        address = "127.0.0.1:8443"

        [[backend]]
        name = "tts"
        command = ["python3", "tts_app.py"]
        address = "127.0.0.1:8001"

        [[route]]
        path = "/tts-ws"
        backend = "tts"
        protocol = "websocket"
        """

    @Test func seedsHazardIsWarnedAbout() throws {
        let loaded = try load(Self.seedConfig)
        #expect(loaded.warnings.count == 1)
        let warning = try #require(loaded.warnings.first)
        #expect(warning.keyPath == "route[1].protocol")
        #expect(warning.line == 13)
        #expect(warning.message.contains("per request"))
        #expect(warning.message.contains("protocol = \"auto\""))
        #expect(warning.message.contains("426"))
    }

    @Test func webSocketRouteCoveringAnHTTPRouteOfTheSameBackend() throws {
        let loaded = try load(
            Self.seedConfig + """

                [[route]]
                path = "/tts-ws/tts/wav/"
                backend = "tts"
                protocol = "http"
                """)
        #expect(loaded.warnings.count == 1)
        #expect(loaded.warnings[0].message.contains("covers route[2]"))
    }

    @Test func autoRouteIsNotWarnedAbout() throws {
        let loaded = try load(Self.seedConfig.replacing("protocol = \"websocket\"", with: "protocol = \"auto\""))
        #expect(loaded.warnings.isEmpty)
    }

    @Test func webSocketRouteToTheBuiltinWebSocketServiceIsFine() throws {
        let loaded = try load(
            Self.seedConfig.replacing("command = [\"python3\", \"tts_app.py\"]", with: "builtin = \"websocket\""))
        #expect(loaded.warnings.isEmpty)
    }

    @Test func shorterPrefixListedFirstIsShadowedByALongerOne() throws {
        let loaded = try load(
            minimalConfig + """
                [[backend]]
                name = "files"
                address = "127.0.0.1:8002"
                [[route]]
                path = "/tts-ws/tts/wav/"
                backend = "files"
                """)
        #expect(loaded.warnings.map(\.keyPath) == ["route[2].path"])
        #expect(loaded.warnings[0].message.contains("longest prefix wins"))
    }

    @Test func longerPrefixListedFirstIsNotWarnedAbout() throws {
        let loaded = try load(
            """
            [[listen]]
            name = "h"
            address = "127.0.0.1:1"
            [[backend]]
            name = "a"
            address = "127.0.0.1:2"
            [[backend]]
            name = "b"
            address = "127.0.0.1:3"
            [[route]]
            path = "/x/y"
            backend = "b"
            [[route]]
            path = "/"
            backend = "a"
            """)
        #expect(loaded.warnings.isEmpty)
    }

    @Test func plainListenerOnAPublicAddress() throws {
        let loaded = try load(minimalConfig.replacing("127.0.0.1:8080", with: "0.0.0.0:80"))
        #expect(loaded.warnings.map(\.keyPath) == ["listen[1].address"])
        #expect(loaded.warnings[0].message.contains("no TLS"))
    }
}

@Suite struct SourceLocatorTests {
    @Test func findsKeysInTheNthArrayOfTables() {
        let source = """
            [master]
            workers = 2

            [[route]]
            path = "/a"

            [[route]]
            path = "/b"

            [[route]]
              path = "/c"
              backend = "x"
            """
        let locator = SourceLocator(source: source)
        #expect(locator.position(of: "master.workers") == .init(line: 2, column: 1))
        #expect(locator.position(of: "route[1].path") == .init(line: 5, column: 1))
        #expect(locator.position(of: "route[3].path") == .init(line: 11, column: 3))
        #expect(locator.position(of: "route[3].backend") == .init(line: 12, column: 3))
        // A key that is absent falls back to its table's header.
        #expect(locator.position(of: "route[2].backend") == .init(line: 7, column: 1))
        #expect(locator.position(of: "nothing.here") == .init(line: 1, column: 1))
    }

    @Test func nestedTablesBelongToTheLatestArrayElement() {
        let source = """
            [[listen]]
            name = "a"
            [[listen]]
            name = "b"
            [listen.tls]
            certificate = "c"
            [[listen.tls.sni]]
            key = "k1"
            [[listen.tls.sni]]
            key = "k2"
            """
        let locator = SourceLocator(source: source)
        #expect(locator.position(of: "listen[2].tls.certificate").line == 6)
        #expect(locator.position(of: "listen[2].tls.sni[2].key").line == 10)
    }

    @Test func multilineStringsAreSkipped() {
        let source = "a = \"\"\"\nb = 1\n\"\"\"\nb = 2\n"
        #expect(SourceLocator(source: source).position(of: "b").line == 4)
    }
}

@Suite struct ExampleAndDefaultTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let examplePath = root.appendingPathComponent("config.example.toml").path

    @Test func exampleFileLoadsWithoutErrorsOrWarnings() throws {
        let loaded = try ConfigurationLoader.load(contentsOf: Self.examplePath, options: .init(checkFiles: false))
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
        let config = loaded.configuration
        #expect(config.listeners.first?.address == .inet(host: "0.0.0.0", port: 443))
        #expect(config.backend(named: "tts")?.kind.isSupervised == true)
        #expect(config.routes.contains { $0.path == "/tts-ws/tts/wav/" && $0.backendName == "files" })
    }

    @Test func exampleFileFailsOnlyOnTheMissingCertificatesWhenFilesAreChecked() throws {
        guard !FileManager.default.fileExists(atPath: "/etc/ferry/cert.pem") else { return }
        do {
            _ = try ConfigurationLoader.load(contentsOf: Self.examplePath)
            Issue.record("expected the missing /etc/ferry certificates to be reported")
        } catch {
            #expect(error.diagnostics.map(\.keyPath) == ["listen[1].tls.certificate", "listen[1].tls.key"])
        }
    }

    /// Docs cannot rot: every key the loader accepts appears in config.example.toml, as a setting
    /// or as a commented-out line.
    @Test func everyAcceptedKeyIsDocumentedInTheExample() throws {
        let example = try String(contentsOfFile: Self.examplePath, encoding: .utf8)
        let maximal = """
            [master]
            [[listen]]
            [listen.tls]
            [[listen.tls.sni]]
            [listen.tls.acme]
            [[backend]]
            [backend.restart]
            [backend.readiness]
            [backend.health]
            [[route]]
            [pool]
            [limits]
            [http2]
            [health]
            [admin]
            """
        let keys = ConfigurationLoader.acceptedKeys(source: maximal)
        #expect(keys.count > 60)
        for key in keys.sorted() {
            let name = String(key.split(separator: ".").last!)
            let tables = [
                "master", "listen", "listen.tls", "listen.tls.sni", "listen.tls.acme", "backend", "backend.restart", "backend.readiness",
                "backend.health", "health", "admin",
                "route", "pool", "limits", "http2",
            ]
            let isTable = tables.contains(key)
            if isTable {
                #expect(
                    example.contains("[\(key)]") || example.contains("[[\(key)]]"), "table \(key) is not documented")

            } else {
                let documented = example.split(separator: "\n").contains { line in
                    let text = line.drop { $0 == " " || $0 == "#" }
                    return text.hasPrefix("\(name) =") || text.hasPrefix("\(name)=")
                }
                #expect(documented, "key \(key) is not documented in config.example.toml")
            }
        }
    }

    @Test func embeddedDefaultIsTheSeedOnLoopbackWithNoWarnings() throws {
        let loaded = try ConfigurationLoader.embeddedDefault(environment: ["FERRY_STATE_DIR": "/tmp/ferry-test-state"])
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.fileName == "<embedded default>")
        let config = loaded.configuration
        #expect(config.master.stateDirectory == "/tmp/ferry-test-state")
        #expect(config.master.controlSocket == "/tmp/ferry-test-state/control.sock")
        #expect(config.listeners.first?.address == .inet(host: "127.0.0.1", port: 8443))
        #expect(config.listeners.first?.tls?.selfSigned == true)
        #expect(
            config.listeners.first?.tls?.certificates.first?.certificatePath
                == "/tmp/ferry-test-state/tls/selfsigned.crt")
        #expect(Set(config.routes.map(\.path)) == ["/tts-ws/tts", "/tts-ws/tts/wav/", "/tts-ws/tts/mp3/", "/"])
        guard case .builtinStatic(let files) = config.backend(named: "files")?.kind else {
            Issue.record("files is not the static backend")
            return
        }
        #expect(files.demoPage)
        guard case .builtinWebSocket(let tts) = config.backend(named: "tts")?.kind else {
            Issue.record("tts is not the websocket backend")
            return
        }
        #expect(tts.resultsDirectory == "/tmp/ferry-test-state/www/tts")
    }

    @Test func stateDirectoryChoice() {
        #expect(EmbeddedDefault.stateDirectory(environment: ["FERRY_STATE_DIR": "/x"]) == "/x")
        if getuid() != 0 {
            #expect(EmbeddedDefault.stateDirectory(environment: ["HOME": "/home/u"]) == "/home/u/.local/state/ferry")
        } else {
            #expect(EmbeddedDefault.stateDirectory(environment: ["HOME": "/root"]) == "/var/lib/ferry")
        }
    }

    @Test func builtinSpawnArgumentsCarryOptions() throws {
        let config = try ConfigurationLoader.embeddedDefault(environment: ["FERRY_STATE_DIR": "/s"]).configuration
        let tts = try #require(config.backend(named: "tts")?.spawnArguments)
        #expect(Array(tts.prefix(4)) == ["backend", "websocket", "--address", "127.0.0.1:8001"])
        #expect(tts.contains("--idle-timeout-ms"))
        let files = try #require(config.backend(named: "files")?.spawnArguments)
        #expect(files.contains("--demo-page"))
        #expect(files.contains("/s/www"))
    }
}
