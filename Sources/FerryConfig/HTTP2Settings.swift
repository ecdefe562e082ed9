/// `[http2]`: HTTP/2 on TLS listeners that offer `h2` in ALPN, and the limits that protect a
/// worker from the protocol's known attacks. Each limit, when hit, ends the stream or the
/// connection and is counted in `ferry status` (the `REFUSED` column of the protocols table).
/// Applied in place on reload: connections accepted after it use the new values.
public struct HTTP2Settings: Sendable, Equatable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once.
    public var maxConcurrentStreams: Int
    /// SETTINGS_HEADER_TABLE_SIZE: the HPACK dynamic table the client's encoder may use.
    public var headerTableSize: Int
    /// Rapid reset (CVE-2023-44487): streams the client may reset within `resetWindow`; more
    /// closes the connection (GOAWAY ENHANCE_YOUR_CALM).
    public var maxResets: Int
    public var resetWindow: Duration
    /// CONTINUATION flood (CVE-2024-27316 class): CONTINUATION frames one header block may take.
    public var maxContinuationFrames: Int
    /// SETTINGS, PING and PRIORITY floods: such frames the client may send within
    /// `controlFrameWindow`.
    public var maxControlFrames: Int
    public var controlFrameWindow: Duration
    /// A response that cannot be sent because the client keeps its flow-control window shut
    /// (a zero-window stall) is reset after this long.
    public var sendTimeout: Duration

    public init(
        maxConcurrentStreams: Int = 128, headerTableSize: Int = 4096, maxResets: Int = 200,
        resetWindow: Duration = .seconds(30), maxContinuationFrames: Int = 5, maxControlFrames: Int = 200,
        controlFrameWindow: Duration = .seconds(30), sendTimeout: Duration = .seconds(60)
    ) {
        self.maxConcurrentStreams = maxConcurrentStreams
        self.headerTableSize = headerTableSize
        self.maxResets = maxResets
        self.resetWindow = resetWindow
        self.maxContinuationFrames = maxContinuationFrames
        self.maxControlFrames = maxControlFrames
        self.controlFrameWindow = controlFrameWindow
        self.sendTimeout = sendTimeout
    }
}

extension SectionParser {
    func parseHTTP2(_ table: TableReader) -> HTTP2Settings {
        var settings = HTTP2Settings()
        if let count = table.int("max_concurrent_streams", range: 1...10_000) { settings.maxConcurrentStreams = count }
        if let bytes = table.size("header_table_size", minimum: 0) {
            if bytes > 1 << 20 {
                sink.error(table.keyPath("header_table_size"), "at most 1 MiB")
            } else {
                settings.headerTableSize = bytes
            }
        }
        if let count = table.int("max_resets", range: 1...1_000_000) { settings.maxResets = count }
        if let window = table.duration("reset_window", minimum: .seconds(1)) { settings.resetWindow = window }
        if let count = table.int("max_continuation_frames", range: 0...1_000) { settings.maxContinuationFrames = count }
        if let count = table.int("max_control_frames", range: 1...1_000_000) { settings.maxControlFrames = count }
        if let window = table.duration("control_frame_window", minimum: .seconds(1)) {
            settings.controlFrameWindow = window
        }
        if let timeout = table.duration("send_timeout", minimum: .milliseconds(100)) { settings.sendTimeout = timeout }
        table.finish()
        return settings
    }
}
