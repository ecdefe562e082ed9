import Foundation

/// A spawned backend with `instances = N` runs N processes, each supervised on its own (restart,
/// backoff, readiness) and each a server of the backend. Instance `i` (1…N) listens on the base
/// address's port + i - 1, or on the address with `{instance}` replaced (Unix sockets); in a
/// `command`, `{port}` and `{instance}` are replaced in every argument and environment value.
extension BackendConfiguration {
    /// The master supervises these: the backend itself when it has one instance, else one
    /// configuration per instance, named `name/i`, with its own address and command.
    public var instanceConfigurations: [BackendConfiguration] {
        guard instances > 1 else { return [self] }
        return (1...instances).map { instance in
            var copy = self
            copy.name = "\(name)/\(instance)"
            copy.instances = 1
            copy.address = servers[instance - 1].address
            copy.servers = [servers[instance - 1]]
            if case .command(var spec) = kind {
                let port: String
                if case .inet(_, let number) = copy.address { port = String(number) } else { port = "" }
                func fill(_ text: String) -> String {
                    text.replacingOccurrences(of: "{port}", with: port).replacingOccurrences(
                        of: "{instance}", with: String(instance))
                }
                spec.argv = spec.argv.map(fill)
                spec.environment = spec.environment.mapValues(fill)
                copy.kind = .command(spec)
            }
            return copy
        }
    }

    /// The address of instance `instance` (1-based) of a backend whose first instance is at `base`;
    /// nil when the base cannot give N distinct addresses (a Unix path without `{instance}`, or a
    /// port range past 65535).
    public static func instanceAddress(_ base: BackendAddress, instance: Int) -> BackendAddress? {
        switch base {
        case .inet(let host, let port):
            let next = port + instance - 1
            return next <= 65535 ? .inet(host: host, port: next) : nil
        case .unix(let path):
            guard path.contains("{instance}") else { return nil }
            return .unix(path: path.replacingOccurrences(of: "{instance}", with: String(instance)))
        }
    }

    /// `("tts", 2)` for the instance name `tts/2` (index 0-based), nil for any other name.
    public static func splitInstanceName(_ name: String) -> (backend: String, server: Int)? {
        guard let slash = name.lastIndex(of: "/"), let number = Int(name[name.index(after: slash)...]), number >= 1
        else { return nil }
        return (String(name[..<slash]), number - 1)
    }
}
