extension SectionParser {
    /// A `redirect_to_https` listener without `redirect_port` sends clients to the first TLS
    /// listener's port; without one it has nowhere to send them.
    func resolveRedirects(_ configuration: inout FerryConfiguration) {
        let tlsPort = configuration.listeners.lazy.compactMap { listener -> Int? in
            guard listener.tls != nil, case .inet(_, let port) = listener.address, port != 0 else { return nil }
            return port
        }.first
        for index in configuration.listeners.indices where configuration.listeners[index].redirectToHTTPSPort == 0 {
            if let tlsPort {
                configuration.listeners[index].redirectToHTTPSPort = tlsPort
            } else {
                sink.error(
                    "listen[\(index + 1)].redirect_to_https",
                    "no TLS listener with a port to redirect to: add one, or set redirect_port")
            }
        }
    }
}
