public import FerryConfig

/// Chooses a backend's server for each new request or tunnel, from the servers' weights and their
/// current load (in-flight requests plus open tunnels, as this worker counts them).
///
/// Pure logic, no I/O: the caller passes the loads and which servers may take work, and gets an
/// index back. Each worker balances its own share; since every worker keeps its share within one
/// connection of even, the host's total is within `workers` connections of even (decisions.md).
public struct Balancer: Sendable {
    public let policy: BalancePolicy
    /// Configured weights; `pick` may be given lower ones for servers ramping up (slow start).
    public private(set) var weights: [Int]
    /// Smooth weighted round robin's running scores (nginx's algorithm).
    private var scores: [Int]
    /// Where ties start, rotated so equal loads are spread rather than piled on server 0.
    private var rotation = 0
    /// Consistent-hash ring: points sorted, each owned by a server.
    private let ring: [(point: UInt64, server: Int)]
    private var random: SplitMix64

    /// Ring points per unit of weight: enough that each server's share is within a few percent.
    static let pointsPerWeight = 512

    /// - Parameters:
    ///   - names: a stable name per server (its address), hashed onto the ring, so that a server
    ///     keeps its points when others are added or removed.
    ///   - seed: the random choices' seed (tests pass a fixed one).
    public init(
        policy: BalancePolicy, weights: [Int], names: [String], seed: UInt64 = UInt64.random(in: 0...UInt64.max)
    ) {
        self.policy = policy
        self.weights = weights.map { max(1, $0) }
        scores = Array(repeating: 0, count: weights.count)
        random = SplitMix64(seed: seed)
        if case .hash = policy {
            var points: [(UInt64, Int)] = []
            for (server, name) in names.enumerated() {
                for replica in 0..<(Self.pointsPerWeight * max(1, weights[server])) {
                    points.append((Self.fnv1a("\(name)#\(replica)"), server))
                }
            }
            ring = points.sorted { $0.0 < $1.0 }.map { (point: $0.0, server: $0.1) }
        } else {
            ring = []
        }
    }

    /// The server for the next request or tunnel; nil when none is eligible.
    /// - Parameters:
    ///   - loads: in-flight requests plus open tunnels per server.
    ///   - eligible: servers that may take new work (not down, ejected or draining).
    ///   - key: the hash policy's key for this request (nil: balanced by load instead).
    ///   - weightsNow: the weights in effect now, when some servers are ramping up (slow start);
    ///     the hash ring keeps the configured ones.
    public mutating func pick(loads: [Int], eligible: [Bool], key: String? = nil, weightsNow: [Int]? = nil) -> Int? {
        let configured = weights
        if let weightsNow { weights = weightsNow.map { max(1, $0) } }
        defer { weights = configured }
        let candidates = weights.indices.filter { eligible[$0] }
        guard !candidates.isEmpty else { return nil }
        if candidates.count == 1 { return candidates[0] }
        switch policy {
        case .roundRobin:
            return smoothRoundRobin(candidates)
        case .leastConnections:
            return leastLoaded(candidates, loads: loads)
        case .randomTwoChoices:
            let first = weightedRandom(candidates)
            let second = weightedRandom(candidates.filter { $0 != first })
            return lighter(first, second, loads: loads)
        case .hash:
            guard let key else { return leastLoaded(candidates, loads: loads) }
            return onRing(Self.fnv1a(key), eligible: eligible)
        }
    }

    private mutating func smoothRoundRobin(_ candidates: [Int]) -> Int {
        var total = 0
        var best = candidates[0]
        for server in candidates {
            scores[server] += weights[server]
            total += weights[server]
            if scores[server] > scores[best] { best = server }
        }
        scores[best] -= total
        return best
    }

    private mutating func leastLoaded(_ candidates: [Int], loads: [Int]) -> Int {
        rotation = (rotation + 1) % candidates.count
        var best = candidates[rotation]
        for offset in 1..<candidates.count {
            let server = candidates[(rotation + offset) % candidates.count]
            best = lighter(best, server, loads: loads)
        }
        return best
    }

    /// The one with less load per unit of weight (the first on a tie).
    private func lighter(_ a: Int, _ b: Int, loads: [Int]) -> Int {
        loads[b] * weights[a] < loads[a] * weights[b] ? b : a
    }

    private mutating func weightedRandom(_ candidates: [Int]) -> Int {
        let total = candidates.reduce(0) { $0 + weights[$1] }
        var draw = Int(random.next() % UInt64(total))
        for server in candidates {
            draw -= weights[server]
            if draw < 0 { return server }
        }
        return candidates[candidates.count - 1]
    }

    /// The first eligible server at or after `hash` on the ring (wrapping around).
    private func onRing(_ hash: UInt64, eligible: [Bool]) -> Int? {
        var low = 0
        var high = ring.count
        while low < high {
            let middle = (low + high) / 2
            if ring[middle].point < hash { low = middle + 1 } else { high = middle }
        }
        for step in 0..<ring.count {
            let server = ring[(low + step) % ring.count].server
            if eligible[server] { return server }
        }
        return nil
    }

    /// FNV-1a, 64 bits: stable across processes and runs (Swift's `Hasher` is seeded per process,
    /// and every worker must send a key to the same server).
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        // FNV's low bits mix poorly for short keys: a final avalanche (from SplitMix64).
        hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
        hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
        return hash ^ (hash >> 31)
    }
}

/// A small seedable generator for the random choices (SplitMix64).
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
