internal import TOMLKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns TOML text into a validated `FerryConfiguration`, collecting every error with its position.
///
/// The steps are: TOMLKit parses (syntax errors carry TOMLKit's own line and column); each section
/// is read through a `TableReader` (types, ranges, unknown keys); cross-references are validated
/// (names, backends, prefixes, files on disk); then `ConfigurationLinter` adds warnings. Nothing is
/// returned unless there are zero errors, so consumers never re-check.
public enum ConfigurationLoader {
    /// Options that change what is checked, for tools and tests.
    public struct Options: Sendable {
        /// Check that certificate and key files exist and are readable (on by default).
        public var checkFiles: Bool

        public init(checkFiles: Bool = true) {
            self.checkFiles = checkFiles
        }
    }

    public static func load(contentsOf path: String) throws(ConfigurationError) -> LoadedConfiguration {
        try load(contentsOf: path, options: Options())
    }

    public static func load(contentsOf path: String, options: Options) throws(ConfigurationError) -> LoadedConfiguration
    {
        guard let source = readFile(path) else {
            let reason = String(cString: strerror(errno))
            throw ConfigurationError(diagnostics: [
                ConfigurationDiagnostic(
                    severity: .error, file: path, line: 1, column: 1, keyPath: "",
                    message: "cannot read the configuration file: \(reason)")
            ])
        }
        return try load(source: source, fileName: path, options: options)
    }

    public static func load(source: String, fileName: String) throws(ConfigurationError) -> LoadedConfiguration {
        try load(source: source, fileName: fileName, options: Options())
    }

    public static func load(source: String, fileName: String, options: Options) throws(ConfigurationError)
        -> LoadedConfiguration
    {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: source)
        } catch let error as TOMLParseError {
            throw ConfigurationError(diagnostics: [
                ConfigurationDiagnostic(
                    severity: .error, file: fileName, line: error.source.begin.line,
                    column: error.source.begin.column, keyPath: "", message: "TOML syntax: \(error.description)")
            ])
        } catch {
            throw ConfigurationError(diagnostics: [
                ConfigurationDiagnostic(
                    severity: .error, file: fileName, line: 1, column: 1, keyPath: "", message: "TOML: \(error)")
            ])
        }
        let sink = DiagnosticSink(fileName: fileName, locator: SourceLocator(source: source))
        let configuration = SectionParser(sink: sink, options: options).parse(
            TableReader(table: table, path: "", sink: sink))
        // TOMLKit 0.6.0's TOMLTable has no deinit: the parsed document would stay allocated for
        // good (~3 KiB per parse of a small file, measured), and reloads parse again and again.
        // Clearing the root frees every node below it; only the empty root is left.
        table.clear()
        let errors = sink.errors
        guard errors.isEmpty else { throw ConfigurationError(diagnostics: errors) }
        ConfigurationLinter.lint(configuration, sink: sink)
        return LoadedConfiguration(
            configuration: configuration, warnings: sink.warnings, source: source, fileName: fileName)
    }

    /// The embedded default (`ferry serve` and `ferry check` without `--config`).
    public static func embeddedDefault(environment: [String: String]) throws(ConfigurationError) -> LoadedConfiguration
    {
        let source = EmbeddedDefault.source(stateDirectory: EmbeddedDefault.stateDirectory(environment: environment))
        return try load(source: source, fileName: EmbeddedDefault.fileName)
    }

    /// The key paths the loader asks for while reading `source` (tables absent from it are not visited).
    static func acceptedKeys(source: String) -> Set<String> {
        guard let table = try? TOMLTable(string: source) else { return [] }
        let sink = DiagnosticSink(fileName: "<keys>", locator: SourceLocator(source: source))
        _ = SectionParser(sink: sink, options: Options(checkFiles: false)).parse(
            TableReader(table: table, path: "", sink: sink))
        table.clear()
        return sink.acceptedKeys
    }

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count > 0 { bytes.append(contentsOf: buffer[0..<count]) }
            if count < buffer.count { break }
        }
        if ferror(file) != 0 { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Reads each section into the model; one method per section, in file order of the docs.
struct SectionParser {
    let sink: DiagnosticSink
    let options: ConfigurationLoader.Options

    func parse(_ root: TableReader) -> FerryConfiguration {
        var configuration = FerryConfiguration()
        if let master = root.subtable("master") { configuration.master = parseMaster(master) }
        configuration.listeners = root.tableArray("listen").compactMap(parseListener)
        let backendReaders = root.tableArray("backend")
        configuration.backends = backendReaders.compactMap(parseBackend)
        // Names of backends that failed validation still count as declared, so routes naming them
        // are not reported a second time as pointing at an unknown backend.
        let declaredBackends = backendReaders.compactMap { $0.table["name"]?.string }
        let routeReaders = root.tableArray("route")
        configuration.routes = routeReaders.compactMap(parseRoute)
        if let pool = root.subtable("pool") { configuration.pool = parsePool(pool) }
        if let limits = root.subtable("limits") { configuration.limits = parseLimits(limits) }
        if let http2 = root.subtable("http2") { configuration.http2 = parseHTTP2(http2) }
        if let health = root.subtable("health") { configuration.health = parseHealthEndpoint(health) }
        if let admin = root.subtable("admin") { configuration.admin = parseAdmin(admin) }
        root.finish()
        if configuration.listeners.isEmpty && !root.has("listen") {
            sink.error("listen", "at least one [[listen]] is required")
        }
        validateReferences(configuration, declaredBackends: declaredBackends, routeReaders: routeReaders)
        resolveRedirects(&configuration)
        resolveACME(&configuration)
        return configuration
    }

    // MARK: [master]

    func parseMaster(_ table: TableReader) -> MasterSettings {
        var master = MasterSettings()
        if table.has("workers") {
            if let text = table.table["workers"]?.string {
                _ = table.string("workers")
                if text == "auto" {
                    master.workers = .auto
                } else {
                    table.sink.error(
                        table.keyPath("workers"), "'\(text)' is not valid (valid: \"auto\" or a number ≥ 1)")
                }
            } else if let count = table.int("workers", range: 1...1024) {
                master.workers = .fixed(count)
            }
        }
        if let user = table.string("user") { master.user = user }
        if let group = table.string("group") { master.group = group }
        if let socket = table.string("control_socket") {
            if socket.hasPrefix("/") {
                master.controlSocket = socket
            } else {
                sink.error(table.keyPath("control_socket"), "'\(socket)' must be an absolute path")
            }
        }
        if let mode = table.string("control_socket_mode") {
            if let bits = UInt16(mode, radix: 8), bits <= 0o777 {
                master.controlSocketMode = bits
            } else {
                sink.error(table.keyPath("control_socket_mode"), "'\(mode)' is not an octal mode such as \"0600\"")
            }
        }
        if let group = table.string("control_socket_group") { master.controlSocketGroup = group }
        if let state = table.string("state_dir") {
            if state.hasPrefix("/") {
                master.stateDirectory = state
            } else {
                sink.error(table.keyPath("state_dir"), "'\(state)' must be an absolute path")
            }
        }
        if let timeout = table.duration("graceful_timeout") { master.gracefulTimeout = timeout }
        if let interval = table.duration("heartbeat_interval", minimum: .milliseconds(100)) {
            master.heartbeatInterval = interval
        }
        if let standby = table.bool("standby_worker") { master.standbyWorker = standby }
        if let level = table.choice("log_level", MasterSettings.LogLevel.self) { master.logLevel = level }
        if let format = table.choice("log_format", MasterSettings.LogFormat.self) { master.logFormat = format }
        if let access = table.choice("access_log", MasterSettings.AccessLogFormat.self) { master.accessLog = access }
        if let file = table.string("log_file") { master.logFile = file }
        table.finish()
        return master
    }

    // MARK: [[listen]]

    func parseListener(_ table: TableReader) -> ListenerConfiguration? {
        let name = table.requiredString("name", example: "\"https\"")
        let addressText = table.requiredString("address", example: "\"0.0.0.0:443\"")
        let backlog = table.int("backlog", range: 1...65535)
        let tls = table.subtable("tls").flatMap(parseTLS)
        let proxyProtocol = table.bool("proxy_protocol")
        let proxyProtocolFrom = table.stringArray("proxy_protocol_from")
        let proxyProtocolTimeout = table.duration("proxy_protocol_timeout", minimum: .milliseconds(10))
        let redirect = table.bool("redirect_to_https")
        let redirectPort = table.int("redirect_port", range: 1...65535)
        table.finish()
        if redirect == true && tls != nil {
            sink.error(table.keyPath("redirect_to_https"), "applies to a listener without [listen.tls]")
        }
        if redirectPort != nil && redirect != true {
            sink.error(table.keyPath("redirect_port"), "applies only with redirect_to_https = true")
        }
        var sources: [CIDRBlock] = []
        for text in proxyProtocolFrom ?? [] {
            if let block = CIDRBlock(text) {
                sources.append(block)
            } else {
                sink.error(
                    table.keyPath("proxy_protocol_from"),
                    "'\(text)' is not an address or a network (\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\")")
            }
        }
        if proxyProtocol != true && (proxyProtocolFrom != nil || proxyProtocolTimeout != nil) {
            sink.error(
                table.keyPath(proxyProtocolFrom != nil ? "proxy_protocol_from" : "proxy_protocol_timeout"),
                "applies only with proxy_protocol = true")
        }
        guard let name, let addressText else { return nil }
        guard case .success(let address) = parse(ConfigValue.listenAddress(addressText), at: table.keyPath("address"))
        else {
            return nil
        }
        var listener = ListenerConfiguration(name: name, address: address, tls: tls)
        if let backlog { listener.backlog = backlog }
        listener.proxyProtocol = proxyProtocol ?? false
        listener.proxyProtocolFrom = sources
        if let proxyProtocolTimeout { listener.proxyProtocolTimeout = proxyProtocolTimeout }
        // 0 until the references pass sets the first TLS listener's port (`redirect_port` wins).
        if redirect == true && tls == nil { listener.redirectToHTTPSPort = redirectPort ?? 0 }
        return listener
    }

    func parseTLS(_ table: TableReader) -> TLSSettings? {
        let acme = table.subtable("acme").flatMap(parseACME)
        let selfSigned = table.bool("self_signed") ?? false
        // With ACME the files are optional: the master writes the certificate where they point,
        // by default under state_dir (resolveACME fills the paths in).
        let certificate =
            table.has("acme")
            ? table.string("certificate") ?? ""
            : table.requiredString("certificate", example: "\"/etc/ferry/cert.pem\"")
        let key =
            table.has("acme")
            ? table.string("key") ?? "" : table.requiredString("key", example: "\"/etc/ferry/key.pem\"")
        if table.has("acme") && table.has("self_signed") {
            sink.error(
                table.keyPath("self_signed"),
                "does not go with [acme] (a temporary self-signed certificate serves until the first one is issued)")
        }
        var settings = TLSSettings(certificates: [], selfSigned: selfSigned || acme != nil)
        settings.acme = acme
        if let version = table.choice("min_version", TLSVersion.self) { settings.minimumVersion = version }
        if let alpn = table.stringArray("alpn") {
            let supported = ["h2", "http/1.1"]
            if let unsupported = alpn.first(where: { !supported.contains($0) }) {
                sink.error(
                    table.keyPath("alpn"), "'\(unsupported)' is not supported (supported: \"h2\", \"http/1.1\")")
            } else if !alpn.contains("http/1.1") {
                // A client without ALPN, or one that offers only http/1.1, would have no protocol.
                sink.error(table.keyPath("alpn"), "must include \"http/1.1\"")
            } else {
                settings.alpn = alpn
            }
        }
        if let timeout = table.duration("handshake_timeout", minimum: .milliseconds(100)) {
            settings.handshakeTimeout = timeout
        }
        if let path = table.string("ticket_keys") {
            settings.ticketKeysPath = path
            if options.checkFiles {
                do { _ = try TicketKeyFile.read(path: path) } catch {
                    sink.error(table.keyPath("ticket_keys"), "'\(path)': \(error)")
                }
            }
        }
        var sni: [CertificateConfiguration] = []
        for entry in table.tableArray("sni") {
            let certificate = entry.requiredString("certificate", example: "\"/etc/ferry/example.pem\"")
            let key = entry.requiredString("key", example: "\"/etc/ferry/example.key\"")
            let names = entry.stringArray("server_names")
            if names == nil && !entry.has("server_names") {
                sink.error(entry.path, "missing required key 'server_names' (e.g. server_names = [\"example.com\"])")
            }
            if let names, names.isEmpty { sink.error(entry.keyPath("server_names"), "needs at least one name") }
            entry.finish()
            if let certificate, let key, let names, !names.isEmpty {
                checkReadable(certificate, at: entry.keyPath("certificate"), generated: false)
                checkReadable(key, at: entry.keyPath("key"), generated: false)
                sni.append(CertificateConfiguration(certificatePath: certificate, keyPath: key, serverNames: names))
            }
        }
        table.finish()
        guard let certificate, let key else { return nil }
        if !certificate.isEmpty {
            checkReadable(certificate, at: table.keyPath("certificate"), generated: settings.selfSigned)
        }
        if !key.isEmpty { checkReadable(key, at: table.keyPath("key"), generated: settings.selfSigned) }
        settings.certificates = [CertificateConfiguration(certificatePath: certificate, keyPath: key)] + sni
        return settings
    }

    /// Certificate and key files are checked on disk, not just named; a self-signed pair that does
    /// not exist yet is fine (it is generated at start), an unreadable one is not.
    func checkReadable(_ path: String, at keyPath: String, generated: Bool) {
        guard options.checkFiles else { return }
        if access(path, R_OK) == 0 { return }
        let reason = String(cString: strerror(errno))
        if generated && errno == ENOENT { return }
        sink.error(keyPath, "cannot read '\(path)': \(reason)")
    }

    // MARK: [[route]]

    func parseRoute(_ table: TableReader) -> RouteConfiguration? {
        let rawPath = table.requiredString("path", example: "\"/tts-ws/\"")
        let backend = table.string("backend")
        let respond = table.int("respond", range: 100...599)
        let body = table.string("body")
        let redirect = table.string("redirect")
        let status = table.int("status", range: 300...399)
        let routeProtocol = table.choice("protocol", RouteProtocol.self)
        let stripPrefix = table.string("strip_prefix")
        let rewrite = table.string("rewrite")
        let connectTimeout = table.duration("connect_timeout", minimum: .milliseconds(1))
        let responseTimeout = table.duration("response_timeout", minimum: .milliseconds(1))
        let allowEncodedSlashes = table.bool("allow_encoded_slashes")
        let rawHosts = table.stringArray("hosts")
        let actions = [table.has("backend"), table.has("respond"), table.has("redirect")].filter { $0 }.count
        table.finish()

        guard let rawPath else { return nil }
        guard rawPath.hasPrefix("/") else {
            sink.error(table.keyPath("path"), "'\(rawPath)' must start with '/'")
            return nil
        }
        let path = RoutePath.normalize(rawPath)
        if actions != 1 {
            sink.error(
                table.path,
                actions == 0
                    ? "a route needs one of backend = \"…\", respond = 403 or redirect = \"https://…\""
                    : "a route takes only one of backend, respond and redirect")
        }
        if body != nil && respond == nil { sink.error(table.keyPath("body"), "body is used only with respond") }
        if status != nil && redirect == nil { sink.error(table.keyPath("status"), "status is used only with redirect") }
        if let status, ![301, 302, 303, 307, 308].contains(status) {
            sink.error(table.keyPath("status"), "\(status) is not a redirect status (valid: 301, 302, 303, 307, 308)")
        }
        if let redirect, !(redirect.hasPrefix("https://") || redirect.hasPrefix("http://") || redirect.hasPrefix("/")) {
            sink.error(table.keyPath("redirect"), "'\(redirect)' must be an absolute URL or a path")
        }
        if let stripPrefix, !path.hasPrefix(RoutePath.normalize(stripPrefix)) {
            sink.error(table.keyPath("strip_prefix"), "'\(stripPrefix)' is not a prefix of the route's path '\(path)'")
        }
        if stripPrefix != nil && rewrite != nil {
            sink.error(table.keyPath("rewrite"), "use strip_prefix or rewrite, not both")
        }
        if let rewrite, !rewrite.hasPrefix("/") {
            sink.error(table.keyPath("rewrite"), "'\(rewrite)' must start with '/'")
        }
        let action: RouteAction
        if let backend {
            action = .proxy(backend: backend)
        } else if let respond {
            action = .respond(status: respond, body: body)
        } else if let redirect {
            action = .redirect(location: redirect, status: status ?? 302)
        } else {
            return nil
        }
        if backend == nil,
            connectTimeout != nil || responseTimeout != nil || routeProtocol != nil || stripPrefix != nil
                || rewrite != nil
        {
            sink.error(table.path, "protocol, strip_prefix, rewrite and timeouts apply only to routes with a backend")
        }
        var hosts: [String] = []
        for raw in rawHosts ?? [] {
            var host = raw.lowercased()
            while host.hasSuffix(".") { host.removeLast() }
            if !HostName.isValidPattern(host) {
                sink.error(
                    table.keyPath("hosts"),
                    "'\(raw)' is not a host name or a '*.example.org' wildcard (no port, no scheme, no path)")
            } else if hosts.contains(host) {
                sink.error(table.keyPath("hosts"), "'\(raw)' is listed twice")
            } else {
                hosts.append(host)
            }
        }
        if rawHosts?.isEmpty == true {
            sink.error(table.keyPath("hosts"), "an empty list: leave hosts out for the default site")
        }
        var timeouts = RouteTimeouts(connect: connectTimeout)
        if let responseTimeout { timeouts.response = responseTimeout }
        return RouteConfiguration(
            path: path, action: action, protocol: routeProtocol ?? .auto, stripPrefix: stripPrefix, rewrite: rewrite,
            timeouts: timeouts, allowEncodedSlashes: allowEncodedSlashes ?? false, hosts: hosts)
    }

    // MARK: [pool], [limits]

    func parseHealthEndpoint(_ table: TableReader) -> HealthEndpointSettings? {
        let listen = table.requiredString("listen", example: "\"127.0.0.1:8080\"")
        let drainDelay = table.duration("drain_delay")
        table.finish()
        guard let address = ownAddress(listen, table, "the health endpoint") else { return nil }
        return HealthEndpointSettings(listen: address, drainDelay: drainDelay ?? .zero)
    }

    func parseAdmin(_ table: TableReader) -> AdminSettings? {
        let listen = table.requiredString("listen", example: "\"127.0.0.1:9090\"")
        let user = table.string("user")
        let digest = table.string("password_sha256")
        table.finish()
        if (user == nil) != (digest == nil) {
            sink.error(
                table.keyPath(user == nil ? "password_sha256" : "user"),
                "user and password_sha256 go together (the password's digest: printf %s PASSWORD | sha256sum)")
        }
        if let digest, digest.count != 64 || !digest.allSatisfy(\.isHexDigit) {
            sink.error(
                table.keyPath("password_sha256"),
                "not a SHA-256 digest (64 hex digits: printf %s PASSWORD | sha256sum)")
        }
        guard let address = ownAddress(listen, table, "the admin listener") else { return nil }
        return AdminSettings(listen: address, user: user, passwordSHA256: digest?.lowercased())
    }

    /// The `listen` of a master endpoint: a host:port of its own (not a systemd socket).
    private func ownAddress(_ text: String?, _ table: TableReader, _ what: String) -> ListenAddress? {
        guard let text, case .success(let address) = parse(ConfigValue.listenAddress(text), at: table.keyPath("listen"))
        else { return nil }
        guard case .inet = address else {
            sink.error(table.keyPath("listen"), "\(what) listens on an address of its own (host:port)")
            return nil
        }
        return address
    }

    func parsePool(_ table: TableReader) -> PoolSettings {
        var pool = PoolSettings()
        if let max = table.int("max_idle_per_backend", range: 0...100_000) { pool.maxIdlePerBackend = max }
        if let idle = table.duration("idle_timeout", minimum: .milliseconds(100)) { pool.idleTimeout = idle }
        if let max = table.int("max_requests_per_connection", range: 1...100_000_000) {
            pool.maxRequestsPerConnection = max
        }
        table.finish()
        return pool
    }

    func parseLimits(_ table: TableReader) -> LimitSettings {
        var limits = LimitSettings()
        if let bytes = table.size("max_header_bytes", minimum: 1024) { limits.maxHeaderBytes = bytes }
        if let count = table.int("max_header_count", range: 1...10_000) { limits.maxHeaderCount = count }
        if let bytes = table.size("max_body_bytes", minimum: 0) { limits.maxBodyBytes = bytes }
        if let timeout = table.duration("header_timeout", minimum: .milliseconds(100)) {
            limits.headerTimeout = timeout
        }
        if let timeout = table.duration("body_timeout", minimum: .milliseconds(100)) { limits.bodyTimeout = timeout }
        if let timeout = table.duration("idle_timeout", minimum: .milliseconds(100)) { limits.idleTimeout = timeout }
        if let max = table.int("max_connections_per_worker", range: 1...1_000_000) {
            limits.maxConnectionsPerWorker = max
        }
        if let timeout = table.duration("websocket_idle_timeout", minimum: .seconds(1)) {
            limits.websocketIdleTimeout = timeout
        }
        table.finish()
        return limits
    }

    // MARK: cross-references

    func validateReferences(
        _ configuration: FerryConfiguration, declaredBackends: [String], routeReaders: [TableReader]
    ) {
        var listenerNames: [String: Int] = [:]
        for (index, listener) in configuration.listeners.enumerated() {
            if let first = listenerNames[listener.name] {
                sink.error(
                    "listen[\(index + 1)].name", "duplicate listener name '\(listener.name)' (also listen[\(first)])")
            } else {
                listenerNames[listener.name] = index + 1
            }
        }
        var backendNames: [String: Int] = [:]
        for (index, backend) in configuration.backends.enumerated() {
            if let first = backendNames[backend.name] {
                sink.error(
                    "backend[\(index + 1)].name", "duplicate backend name '\(backend.name)' (also backend[\(first)])")
            } else {
                backendNames[backend.name] = index + 1
            }
        }
        var addresses: [BackendAddress: String] = [:]
        for (index, backend) in configuration.backends.enumerated() where backend.kind.isSupervised {
            for server in backend.servers {
                if let other = addresses[server.address] {
                    sink.error(
                        "backend[\(index + 1)].address",
                        "'\(server.address)' is also the address of backend '\(other)'")
                }
                addresses[server.address] = backend.name
            }
        }
        var known: [String] = []
        for name in declaredBackends where !known.contains(name) { known.append(name) }
        var paths: [String: String] = [:]
        for (route, reader) in zip(configuration.routes, routeReaders) {
            if let backend = route.backendName, !known.contains(backend) {
                let list = known.isEmpty ? "none are defined" : "known: " + known.joined(separator: ", ")
                sink.error(reader.keyPath("backend"), "no backend named '\(backend)' (\(list))")
            }
            // A path may appear once per site (host pattern, or the default site).
            for host in route.hosts.isEmpty ? [""] : route.hosts {
                let key = host + " " + route.path
                if let first = paths[key] {
                    let site = host.isEmpty ? "" : " for host '\(host)'"
                    sink.error(reader.keyPath("path"), "duplicate route path '\(route.path)'\(site) (also \(first))")
                } else {
                    paths[key] = reader.path
                }
            }
        }
    }

    func parse<T>(_ result: Result<T, ConfigValue.ParseFailure>, at keyPath: String) -> Result<
        T, ConfigValue.ParseFailure
    > {
        if case .failure(let failure) = result { sink.error(keyPath, failure.reason) }
        return result
    }
}

/// Route path normalization shared by validation and lint: a leading '/', no empty segments.
public enum RoutePath {
    public static func normalize(_ path: String) -> String {
        var result = "/"
        var previousSlash = true
        for character in path {
            if character == "/" {
                if previousSlash { continue }
                previousSlash = true
            } else {
                previousSlash = false
            }
            result.append(character)
        }
        return result
    }

    /// Whether `prefix` covers `path` (path-segment aware: `/tts` covers `/tts/x` and `/tts`, and,
    /// as nginx and Apache do, also `/ttsx`, since prefixes are plain string prefixes).
    public static func covers(_ prefix: String, _ path: String) -> Bool {
        path.hasPrefix(prefix)
    }
}
