extension BackendConfiguration {
    /// The command line after the executable that runs this backend: `backend websocket …` /
    /// `backend static …` for built-ins, the configured argv for commands, nil for external backends.
    ///
    /// This is the contract between the supervisor (which spawns) and `ferry backend` (which parses):
    /// durations travel as whole milliseconds, sizes as bytes.
    public var spawnArguments: [String]? {
        switch kind {
        case .external:
            return nil
        case .command(let spec):
            return spec.argv
        case .builtinWebSocket(let options):
            return [
                "backend", "websocket",
                "--address", address.description,
                "--results-dir", options.resultsDirectory,
                "--results-max-bytes", String(options.resultsMaxBytes),
                "--max-message-bytes", String(options.maxMessageBytes),
                "--messages-per-second", String(options.messagesPerSecond),
                "--idle-timeout-ms", String(options.idleTimeout.wholeMilliseconds),
            ]
        case .builtinStatic(let options):
            var arguments = [
                "backend", "static",
                "--address", address.description,
                "--root", options.root,
                "--cache-control", options.cacheControl,
            ]
            if let index = options.index { arguments += ["--index", index] }
            if options.demoPage { arguments.append("--demo-page") }
            return arguments
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
