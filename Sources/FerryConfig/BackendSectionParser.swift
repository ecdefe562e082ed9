/// `[[backend]]` tables: the kind (external, built-in, command), servers or instances, balancing,
/// retries and passive health, `[backend.health]`, restart policy and readiness.
extension SectionParser {
    // MARK: [[backend]]

    static let webSocketOptions = [
        "results_dir", "results_max_bytes", "max_message_bytes", "messages_per_second", "idle_timeout",
    ]
    static let staticOptions = ["root", "cache_control", "index", "demo_page"]

    func parseBackend(_ table: TableReader) -> BackendConfiguration? {
        let name = table.requiredString("name", example: "\"tts\"")
        let serverTables = table.has("servers") ? table.tableArray("servers") : nil
        let addressText =
            serverTables == nil
            ? table.requiredString("address", example: "\"127.0.0.1:8001\"") : table.string("address")
        let balanceText = table.string("balance")
        let hashKeyText = table.string("hash_key")
        let builtin = table.string("builtin")
        let command = table.stringArray("command")
        let environment = table.stringTable("env")
        let cwd = table.string("cwd")
        let connectTimeout = table.duration("connect_timeout", minimum: .milliseconds(1))
        let queueTimeout = table.duration("queue_timeout")
        let retries = table.int("retries", range: 0...10)
        let maxFails = table.int("max_fails", range: 0...1000)
        let failTimeout = table.duration("fail_timeout", minimum: .milliseconds(100))
        let instances = table.int("instances", range: 1...256)
        let health = table.subtable("health").map(parseHealth)
        let slowStart = table.duration("slow_start")
        let stickyCookie = table.string("sticky_cookie")
        let restart = table.subtable("restart").map(parseRestart)
        let readiness = table.subtable("readiness").map(parseReadiness)
        let presentWebSocket = Self.webSocketOptions.filter { table.has($0) }
        let presentStatic = Self.staticOptions.filter { table.has($0) }

        var kind: BackendKind = .external
        switch (builtin, command) {
        case (.some, .some):
            sink.error(table.keyPath("command"), "a backend is either builtin or a command, not both")
        case (.some("websocket"), nil):
            reject(presentStatic, in: table, because: "is an option of builtin = \"static\", not \"websocket\"")
            kind = .builtinWebSocket(parseWebSocketOptions(table))
        case (.some("static"), nil):
            reject(presentWebSocket, in: table, because: "is an option of builtin = \"websocket\", not \"static\"")
            if let options = parseStaticOptions(table) { kind = .builtinStatic(options) }
        case (.some(let other), nil):
            sink.error(table.keyPath("builtin"), "'\(other)' is not valid (valid: \"websocket\", \"static\")")
        case (nil, .some(let argv)):
            reject(presentWebSocket + presentStatic, in: table, because: "is an option of builtin backends only")
            if argv.isEmpty || argv[0].isEmpty {
                sink.error(table.keyPath("command"), "needs a program, e.g. command = [\"python3\", \"app.py\"]")
            } else {
                kind = .command(CommandSpec(argv: argv, environment: environment ?? [:], workingDirectory: cwd))
            }
        case (nil, nil):
            reject(presentWebSocket + presentStatic, in: table, because: "is an option of builtin backends only")
        }
        if environment != nil || cwd != nil, case .command = kind {
        } else if environment != nil || cwd != nil {
            sink.error(table.keyPath(environment != nil ? "env" : "cwd"), "only a command backend takes env and cwd")
        }
        var servers: [ServerConfiguration]?
        if let serverTables {
            servers = parseServers(serverTables, in: table, spawned: kind.isSupervised, address: addressText)
        }
        let balance = parseBalance(balanceText, hashKey: hashKeyText, in: table)
        table.finish()
        guard let name else { return nil }
        let address: BackendAddress
        if let first = servers?.first {
            address = first.address
        } else if let addressText,
            case .success(let parsed) = parse(ConfigValue.backendAddress(addressText), at: table.keyPath("address"))
        {
            address = parsed
        } else {
            return nil
        }
        var backend = BackendConfiguration(name: name, address: address, kind: kind, servers: servers)
        if let balance { backend.balance = balance }
        backend.health = health
        if let slowStart { backend.slowStart = slowStart }
        if let stickyCookie {
            // RFC 6265 cookie-name: a token.
            if !stickyCookie.isEmpty,
                stickyCookie.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "!#$%&'*+-.^_`|~".contains($0)) }
                )
            {
                backend.stickyCookie = stickyCookie
            } else {
                sink.error(
                    table.keyPath("sticky_cookie"), "'\(stickyCookie)' is not a cookie name (letters, digits, -_.)")
            }
        }
        if let instances, instances > 1 {
            if !kind.isSupervised {
                sink.error(table.keyPath("instances"), "instances are for spawned backends; list servers instead")
            } else {
                let addresses = (1...instances).map { BackendConfiguration.instanceAddress(address, instance: $0) }
                if addresses.contains(where: { $0 == nil }) {
                    sink.error(
                        table.keyPath("address"),
                        "\(instances) instances need \(instances) addresses: a port they can count up from, "
                            + "or a Unix path with {instance}")
                } else {
                    backend.instances = instances
                    backend.servers = addresses.compactMap { $0 }.map { ServerConfiguration(address: $0) }
                }
            }
        }
        if let retries { backend.retries = retries }
        if let maxFails { backend.maxFails = maxFails }
        if let failTimeout { backend.failTimeout = failTimeout }
        if let restart { backend.restart = restart }
        if let readiness { backend.readiness = readiness }
        if let connectTimeout { backend.connectTimeout = connectTimeout }
        if let queueTimeout { backend.queueTimeout = queueTimeout }
        if (restart != nil || readiness != nil) && !kind.isSupervised {
            sink.error(
                table.keyPath(restart != nil ? "restart" : "readiness"),
                "only a spawned backend (builtin or command) has restart and readiness settings")
        }
        return backend
    }

    /// `servers = [{ address = "…", weight = N }, …]`: external backends only, instead of `address`.
    func parseServers(_ tables: [TableReader], in table: TableReader, spawned: Bool, address: String?)
        -> [ServerConfiguration]?
    {
        var servers: [ServerConfiguration] = []
        for server in tables {
            let text = server.requiredString("address", example: "\"127.0.0.1:8001\"")
            let weight = server.int("weight", range: 1...1000) ?? 1
            server.finish()
            guard let text,
                case .success(let parsed) = parse(ConfigValue.backendAddress(text), at: server.keyPath("address"))
            else { continue }
            if servers.contains(where: { $0.address == parsed }) {
                sink.error(server.keyPath("address"), "server '\(text)' is listed twice")
                continue
            }
            servers.append(ServerConfiguration(address: parsed, weight: weight))
        }
        if tables.isEmpty { sink.error(table.keyPath("servers"), "needs at least one { address = \"…\" }") }
        if spawned {
            sink.error(table.keyPath("servers"), "servers are for external backends; a spawned backend has its address")
        }
        if address != nil { sink.error(table.keyPath("address"), "use address or servers, not both") }
        return servers.isEmpty ? nil : servers
    }

    func parseBalance(_ text: String?, hashKey: String?, in table: TableReader) -> BalancePolicy? {
        var key: BalancePolicy.HashKey?
        if let hashKey {
            if hashKey == "client_address" {
                key = .clientAddress
            } else if hashKey.hasPrefix("header:"), hashKey.count > 7 {
                key = .header(String(hashKey.dropFirst(7)))
            } else if hashKey.hasPrefix("cookie:"), hashKey.count > 7 {
                key = .cookie(String(hashKey.dropFirst(7)))
            } else {
                sink.error(
                    table.keyPath("hash_key"),
                    "'\(hashKey)' is not valid (valid: \"client_address\", \"header:NAME\", \"cookie:NAME\")")
            }
        }
        switch text {
        case nil:
            if hashKey != nil { sink.error(table.keyPath("hash_key"), "hash_key is used only with balance = \"hash\"") }
            return nil
        case "round_robin", "least_connections", "random_two_choices":
            if hashKey != nil { sink.error(table.keyPath("hash_key"), "hash_key is used only with balance = \"hash\"") }
            return text == "round_robin"
                ? .roundRobin : text == "least_connections" ? .leastConnections : .randomTwoChoices
        case "hash":
            guard let key else {
                if hashKey == nil {
                    sink.error(
                        table.keyPath("balance"),
                        "balance = \"hash\" needs hash_key = \"client_address\", \"header:NAME\" or \"cookie:NAME\"")
                }
                return nil
            }
            return .hash(key)
        case let other?:
            let valid = BalancePolicy.names.map { "\"\($0)\"" }.joined(separator: ", ")
            sink.error(table.keyPath("balance"), "'\(other)' is not valid (valid: \(valid))")
            return nil
        }
    }

    func reject(_ keys: [String], in table: TableReader, because reason: String) {
        for key in keys { sink.error(table.keyPath(key), "'\(key)' \(reason)") }
    }

    func parseWebSocketOptions(_ table: TableReader) -> WebSocketServiceOptions {
        var options = WebSocketServiceOptions()
        if let dir = table.string("results_dir") { options.resultsDirectory = dir }
        if let max = table.size("results_max_bytes", minimum: 1024) { options.resultsMaxBytes = max }
        if let max = table.size("max_message_bytes", minimum: 16) { options.maxMessageBytes = max }
        if let rate = table.int("messages_per_second", range: 1...100_000) { options.messagesPerSecond = rate }
        if let idle = table.duration("idle_timeout", minimum: .seconds(1)) { options.idleTimeout = idle }
        return options
    }

    func parseStaticOptions(_ table: TableReader) -> StaticServiceOptions? {
        guard let root = table.requiredString("root", example: "\"/var/lib/ferry/www\"") else { return nil }
        var options = StaticServiceOptions(root: root)
        if let cache = table.string("cache_control") { options.cacheControl = cache }
        if let index = table.string("index") { options.index = index.isEmpty ? nil : index }
        if let demo = table.bool("demo_page") { options.demoPage = demo }
        return options
    }

    func parseRestart(_ table: TableReader) -> RestartPolicy {
        var policy = RestartPolicy()
        if let mode = table.choice("mode", RestartPolicy.Mode.self) { policy.mode = mode }
        if let initial = table.duration("initial_backoff", minimum: .milliseconds(10)) {
            policy.initialBackoff = initial
        }
        if let max = table.duration("max_backoff", minimum: .milliseconds(10)) { policy.maxBackoff = max }
        if let limit = table.int("crash_loop_limit", range: 1...10_000) { policy.crashLoopLimit = limit }
        if let window = table.duration("crash_loop_window", minimum: .seconds(1)) { policy.crashLoopWindow = window }
        if policy.maxBackoff < policy.initialBackoff {
            sink.error(table.keyPath("max_backoff"), "must not be shorter than initial_backoff")
        }
        table.finish()
        return policy
    }

    /// A URL path (starting with `/`) for a probe; nil when absent or refused.
    private func absolutePath(_ table: TableReader, _ key: String) -> String? {
        guard let path = table.string(key) else { return nil }
        guard path.hasPrefix("/") else {
            sink.error(table.keyPath(key), "'\(path)' must start with '/'")
            return nil
        }
        return path
    }

    func parseHealth(_ table: TableReader) -> HealthCheckSettings {
        var check = HealthCheckSettings()
        check.path = absolutePath(table, "path")
        if let host = table.string("host") { check.host = host }
        if let statuses = table.intArray("status", range: 100...599) { check.statuses = statuses }
        if let interval = table.duration("interval", minimum: .milliseconds(100)) { check.interval = interval }
        if let timeout = table.duration("timeout", minimum: .milliseconds(10)) { check.timeout = timeout }
        if let rise = table.int("rise", range: 1...100) { check.rise = rise }
        if let fall = table.int("fall", range: 1...100) { check.fall = fall }
        if check.timeout > check.interval {
            sink.error(table.keyPath("timeout"), "a check's timeout must not exceed its interval")
        }
        table.finish()
        return check
    }

    func parseReadiness(_ table: TableReader) -> ReadinessCheck {
        var check = ReadinessCheck()
        check.httpPath = absolutePath(table, "http_path")
        if let timeout = table.duration("timeout", minimum: .milliseconds(100)) { check.timeout = timeout }
        table.finish()
        return check
    }
}
