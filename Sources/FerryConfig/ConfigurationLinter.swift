/// Warnings about configurations that are valid but likely not what the operator meant.
///
/// The first rule is the reason Ferry exists: the seed deployment sent a whole prefix to a
/// WebSocket-only proxy line, and its backend connections got mixed between upgrades and plain
/// HTTP. Ferry decides the protocol per request, so one `auto` route is correct; the lint says so.
enum ConfigurationLinter {
    static func lint(_ configuration: FerryConfiguration, sink: DiagnosticSink) {
        lintWebSocketRoutes(configuration, sink: sink)
        lintShadowedRoutes(configuration, sink: sink)
        lintPlainListeners(configuration, sink: sink)
        lintSitesShadowingWildcards(configuration, sink: sink)
        lintAdmin(configuration, sink: sink)
        lintACMEValidation(configuration, sink: sink)
    }

    /// A public CA validates http-01 on port 80 and tls-alpn-01 on port 443 of each name: an ACME
    /// listener that offers neither (no plain listener on 80 for http-01, not itself on 443 for
    /// tls-alpn-01) cannot get a certificate unless something in front maps the ports.
    static func lintACMEValidation(_ configuration: FerryConfiguration, sink: DiagnosticSink) {
        let plainOn80 = configuration.listeners.contains { listener in
            guard listener.tls == nil, case .inet(_, let port) = listener.address else { return false }
            return port == 80
        }
        for (index, listener) in configuration.listeners.enumerated() {
            guard let acme = listener.tls?.acme else { continue }
            let on443: Bool
            if case .inet(_, let port) = listener.address { on443 = port == 443 } else { on443 = false }
            let tlsALPN = acme.challenges.contains(.tlsALPN01) && on443
            let http = acme.challenges.contains(.http01) && plainOn80
            if !tlsALPN && !http {
                sink.warning(
                    "listen[\(index + 1)].tls.acme",
                    "no listener can answer the CA's validation of \(acme.names.joined(separator: ", ")): "
                        + "tls-alpn-01 needs this listener on port 443, http-01 a listener without TLS on port 80 "
                        + "(fine only if a balancer or port mapping sends those ports here)")
            }
        }
    }

    /// The status page shows the whole deployment: on a public address it needs credentials, and
    /// it never shares a port with a public listener.
    static func lintAdmin(_ configuration: FerryConfiguration, sink: DiagnosticSink) {
        guard let admin = configuration.admin, case .inet(let host, let port) = admin.listen else { return }
        if !ConfigValue.isLoopback(host) && admin.user == nil {
            sink.warning(
                "admin.listen",
                "the admin listener on \(admin.listen) is not loopback and has no user/password_sha256: "
                    + "clients not on loopback get 403")
        }
        for (index, listener) in configuration.listeners.enumerated() {
            guard case .inet(let other, let otherPort) = listener.address, otherPort == port, port != 0 else {
                continue
            }
            if other == host || other == "0.0.0.0" || other == "::" || host == "0.0.0.0" || host == "::" {
                sink.warning(
                    "admin.listen",
                    "the admin listener shares port \(port) with listener '\(listener.name)' (listen[\(index + 1)]): "
                        + "the status page must not be on a public listener; give it a port of its own")
            }
        }
    }

    /// A name with routes of its own is a site of its own: a wildcard site's routes do not apply to
    /// it (they are replaced, not added to), which an operator used to location inheritance may
    /// not expect. Said once per wildcard route that the exact site does not repeat.
    static func lintSitesShadowingWildcards(_ configuration: FerryConfiguration, sink: DiagnosticSink) {
        let routes = Array(configuration.routes.enumerated())
        let exactNames = Set(routes.flatMap { $0.element.hosts.filter { !$0.hasPrefix("*.") } })
        for name in exactNames.sorted() {
            let ownPaths = Set(routes.filter { $0.element.hosts.contains(name) }.map(\.element.path))
            for (index, route) in routes
            where !route.hosts.contains(name) && !ownPaths.contains(route.path)
                && route.hosts.contains(where: { $0.hasPrefix("*.") && HostName.routeMatches(pattern: $0, host: name) })
            {
                sink.warning(
                    "route[\(index + 1)].hosts",
                    "route '\(route.path)' does not serve '\(name)', which has routes of its own (a site's routes "
                        + "replace a wildcard's, they do not add to them): list '\(name)' in this route's hosts "
                        + "if it should")
            }
        }
    }

    static func lintWebSocketRoutes(_ configuration: FerryConfiguration, sink: DiagnosticSink) {
        for (index, route) in configuration.routes.enumerated() where route.protocol == .websocket {
            guard let backendName = route.backendName, let backend = configuration.backend(named: backendName) else {
                continue
            }
            let covered = configuration.routes.enumerated().filter { other in
                other.offset != index && other.element.backendName == backendName
                    && other.element.protocol != .websocket && other.element.path.count > route.path.count
                    && RoutePath.covers(route.path, other.element.path)
            }
            for other in covered {
                sink.warning(
                    "route[\(index + 1)].protocol",
                    "WebSocket-only route '\(route.path)' covers route[\(other.offset + 1)] '\(other.element.path)' of the "
                        + "same backend '\(backendName)', which serves plain HTTP: Ferry decides the protocol per "
                        + "request (upgrades tunnel, everything else uses the HTTP pool), so one route with "
                        + "protocol = \"auto\" serves both without mixing connections")
            }
            if covered.isEmpty, !isWebSocketOnly(backend) {
                sink.warning(
                    "route[\(index + 1)].protocol",
                    "route '\(route.path)' is WebSocket-only, but backend '\(backendName)' may also serve plain HTTP "
                        + "under this prefix (e.g. file downloads), which would be answered 426 Upgrade Required: "
                        + "Ferry decides the protocol per request and keeps upgraded and HTTP connections in separate "
                        + "pools, so use protocol = \"auto\"")
            }
        }
    }

    /// A backend known to speak only WebSocket on this route's paths.
    private static func isWebSocketOnly(_ backend: BackendConfiguration) -> Bool {
        if case .builtinWebSocket = backend.kind { return true }
        return false
    }

    /// Longest prefix wins in Ferry whatever the order; a first-match proxy (Apache ProxyPass,
    /// HAProxy ACL order) would have sent these requests to the earlier, shorter route instead.
    static func lintShadowedRoutes(_ configuration: FerryConfiguration, sink: DiagnosticSink) {
        let routes = configuration.routes
        for (i, shorter) in routes.enumerated() {
            for (j, longer) in routes.enumerated() where j > i {
                guard longer.path.count > shorter.path.count, RoutePath.covers(shorter.path, longer.path),
                    longer.action != shorter.action
                else { continue }
                sink.warning(
                    "route[\(j + 1)].path",
                    "route[\(j + 1)] '\(longer.path)' (\(describe(longer.action))) takes every request under it away "
                        + "from the earlier route[\(i + 1)] '\(shorter.path)' (\(describe(shorter.action))): in Ferry "
                        + "the longest prefix wins whatever the order; list longer prefixes first to make that visible")
            }
        }
    }

    static func lintPlainListeners(_ configuration: FerryConfiguration, sink: DiagnosticSink) {
        for (index, listener) in configuration.listeners.enumerated()
        where listener.tls == nil && listener.redirectToHTTPSPort == nil {
            if case .inet(let host, _) = listener.address, !ConfigValue.isLoopback(host) {
                sink.warning(
                    "listen[\(index + 1)].address",
                    "listener '\(listener.name)' on \(listener.address) has no TLS and is not loopback: "
                        + "traffic crosses the network in clear; add [listen.tls]")
            }
        }
    }

    private static func describe(_ action: RouteAction) -> String {
        switch action {
        case .proxy(let backend): "backend '\(backend)'"
        case .respond(let status, _): "respond \(status)"
        case .redirect(let location, _): "redirect to \(location)"
        }
    }
}
