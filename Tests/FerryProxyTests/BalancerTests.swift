import FerryConfig
import NIOCore
import NIOEmbedded
import Testing

@testable import FerryProxy

/// Issue 14, item 3: the balancing policies, as pure functions of weights, loads and keys.
@Suite struct BalancerTests {
    let names = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    let all = [true, true, true]

    @Test func smoothWeightedRoundRobinInterleaves() {
        var balancer = Balancer(policy: .roundRobin, weights: [5, 1, 1], names: names)
        let picks = (0..<7).compactMap { _ in balancer.pick(loads: [0, 0, 0], eligible: all) }
        // nginx's documented sequence for weights 5, 1, 1: a a b a c a a.
        #expect(picks == [0, 0, 1, 0, 2, 0, 0])
    }

    @Test func leastConnectionsWeighsLoadAndSpreadsTies() {
        var balancer = Balancer(policy: .leastConnections, weights: [1, 1, 2], names: names)
        #expect(balancer.pick(loads: [3, 1, 4], eligible: all) == 1)
        #expect(balancer.pick(loads: [3, 2, 2], eligible: all) == 2)  // 2/2 is less than 2/1
        // Equal loads: the choice rotates instead of always taking the first server.
        var equal = Balancer(policy: .leastConnections, weights: [1, 1, 1], names: names)
        let picks = Set((0..<6).compactMap { _ in equal.pick(loads: [0, 0, 0], eligible: all) })
        #expect(picks == [0, 1, 2])
    }

    /// Opening connections one at a time and keeping them (WebSockets), least-connections ends
    /// within one of even, which is what makes per-worker counting enough (decisions.md).
    @Test func leastConnectionsKeepsLongLivedConnectionsEven() {
        var balancer = Balancer(policy: .leastConnections, weights: [1, 1, 1], names: names)
        var loads = [0, 0, 0]
        for _ in 0..<100 {
            if let server = balancer.pick(loads: loads, eligible: all) { loads[server] += 1 }
        }
        #expect(loads.max()! - loads.min()! <= 1, "\(loads)")
    }

    @Test func randomTwoChoicesTakesTheLighterAndSkipsIneligible() {
        var balancer = Balancer(policy: .randomTwoChoices, weights: [1, 1, 1], names: names, seed: 42)
        var loads = [0, 0, 0]
        for _ in 0..<300 {
            if let server = balancer.pick(loads: loads, eligible: all) { loads[server] += 1 }
        }
        #expect(loads.allSatisfy { (90...110).contains($0) }, "\(loads)")
        for _ in 0..<20 { #expect(balancer.pick(loads: [0, 0, 0], eligible: [false, true, false]) == 1) }
        #expect(balancer.pick(loads: [0, 0, 0], eligible: [false, false, false]) == nil)
    }

    @Test func hashSendsAKeyToOneServerAndSpreadsKeys() {
        var balancer = Balancer(policy: .hash(.clientAddress), weights: [1, 1, 1], names: names)
        var counts = [0, 0, 0]
        for index in 0..<9000 {
            let key = "192.0.2.\(index % 250)/\(index)"
            let first = balancer.pick(loads: [0, 0, 0], eligible: all, key: key)
            #expect(balancer.pick(loads: [9, 9, 9], eligible: all, key: key) == first)
            if let first { counts[first] += 1 }
        }
        #expect(counts.allSatisfy { (2500...3500).contains($0) }, "\(counts)")
    }

    /// Consistent hashing: a fourth server takes about a quarter of the keys, all from the others,
    /// and no key moves between the first three.
    @Test func addingAServerMovesAboutOneInN() {
        var three = Balancer(policy: .hash(.clientAddress), weights: [1, 1, 1], names: names)
        var four = Balancer(policy: .hash(.clientAddress), weights: [1, 1, 1, 1], names: names + ["10.0.0.4:80"])
        var moved = 0
        let keys = 10_000
        for index in 0..<keys {
            let key = "client-\(index)"
            let before = three.pick(loads: [0, 0, 0], eligible: all, key: key)
            let after = four.pick(loads: [0, 0, 0, 0], eligible: all + [true], key: key)
            if before != after {
                moved += 1
                #expect(after == 3, "a key moved between old servers")
            }
        }
        let fraction = Double(moved) / Double(keys)
        print("consistent hashing: a fourth server moved \(moved) of \(keys) keys")
        #expect(fraction > 0.15 && fraction < 0.34, "\(fraction)")
    }

    @Test func aHashedKeyWhoseServerIsIneligibleGoesToTheNextOnTheRing() {
        var balancer = Balancer(policy: .hash(.clientAddress), weights: [1, 1, 1], names: names)
        for index in 0..<200 {
            let key = "k\(index)"
            guard let home = balancer.pick(loads: [0, 0, 0], eligible: all, key: key) else { continue }
            var eligible = all
            eligible[home] = false
            let other = balancer.pick(loads: [0, 0, 0], eligible: eligible, key: key)
            #expect(other != nil && other != home)
        }
    }
}

/// Issue 14, item 4: a server back in rotation gets a tenth of its share at first (slow start).
@Suite struct SlowStartTests {
    func group(slowStart: Duration) -> UpstreamGroup {
        var backend = BackendConfiguration(
            name: "app", address: .inet(host: "127.0.0.1", port: 1),
            servers: [
                ServerConfiguration(address: .inet(host: "127.0.0.1", port: 1)),
                ServerConfiguration(address: .inet(host: "127.0.0.1", port: 2)),
            ], balance: .roundRobin)
        backend.slowStart = slowStart
        return UpstreamGroup(
            backend: backend, settings: PoolSettings(), eventLoop: EmbeddedEventLoop(), reusePolicy: .strict)
    }

    func shareOfSecond(_ group: UpstreamGroup) -> Int {
        (0..<110).filter { _ in group.pick(key: nil) == 1 }.count
    }

    @Test func aServerBackFromDownRampsUp() {
        let ramping = group(slowStart: .seconds(10))
        ramping.setHealthy(1, false)
        #expect(shareOfSecond(ramping) == 0)
        ramping.setHealthy(1, true)
        let early = shareOfSecond(ramping)
        #expect((5...15).contains(early), "\(early) of 110 right after coming back")
        let immediate = group(slowStart: .zero)
        immediate.setHealthy(1, false)
        immediate.setHealthy(1, true)
        #expect(shareOfSecond(immediate) == 55)
    }

    @Test func rampedWeightsGrowToTheConfiguredOnes() {
        let ramping = group(slowStart: .seconds(10))
        ramping.setDraining(1, true)
        ramping.setDraining(1, false)
        let now = NIODeadline.now()
        #expect(ramping.rampedWeights(now: now) == [10, 1])
        #expect(ramping.rampedWeights(now: now + .seconds(5)) == [10, 5])
        #expect(ramping.rampedWeights(now: now + .seconds(11)) == nil)
    }
}
