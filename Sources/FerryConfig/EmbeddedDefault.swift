#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The configuration `ferry serve` runs without `--config`: the seed's deployment on loopback,
/// TLS on 127.0.0.1:8443 with a self-signed certificate kept in the state directory.
public enum EmbeddedDefault {
    public static let fileName = "<embedded default>"

    /// `$FERRY_STATE_DIR`, else `/var/lib/ferry` for root, else `$XDG_STATE_HOME/ferry` or
    /// `$HOME/.local/state/ferry`.
    public static func stateDirectory(environment: [String: String]) -> String {
        if let explicit = environment["FERRY_STATE_DIR"], explicit.hasPrefix("/") { return explicit }
        if getuid() == 0 { return "/var/lib/ferry" }
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") { return "\(xdg)/ferry" }
        if let home = environment["HOME"], home.hasPrefix("/") { return "\(home)/.local/state/ferry" }
        return "/tmp/ferry-\(getuid())"
    }

    public static func source(stateDirectory state: String) -> String {
        let escaped = state.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
        return template.replacing("@STATE@", with: escaped)
    }

    static let template = """
        # Ferry's embedded default: the seed's TTS deployment on loopback.
        [master]
        workers = "auto"
        state_dir = "@STATE@"
        control_socket = "@STATE@/control.sock"

        [[listen]]
        name = "https"
        address = "127.0.0.1:8443"
        [listen.tls]
        certificate = "@STATE@/tls/selfsigned.crt"
        key = "@STATE@/tls/selfsigned.key"
        self_signed = true

        [[backend]]
        name = "tts"
        builtin = "websocket"
        address = "127.0.0.1:8001"
        results_dir = "@STATE@/www/tts"

        [[backend]]
        name = "files"
        builtin = "static"
        address = "127.0.0.1:8002"
        root = "@STATE@/www"
        demo_page = true

        [[route]]
        path = "/tts-ws/tts/wav/"
        backend = "files"
        protocol = "http"
        strip_prefix = "/tts-ws"

        [[route]]
        path = "/tts-ws/tts/mp3/"
        backend = "files"
        protocol = "http"
        strip_prefix = "/tts-ws"

        [[route]]
        path = "/tts-ws/tts"
        backend = "tts"
        protocol = "websocket"
        strip_prefix = "/tts-ws"

        [[route]]
        path = "/"
        backend = "files"

        # The status page, loopback only.
        [admin]
        listen = "127.0.0.1:9090"

        """
}
