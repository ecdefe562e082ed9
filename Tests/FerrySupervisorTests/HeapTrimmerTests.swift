import Testing

@testable import FerrySupervisor

@Suite struct HeapTrimmerTests {
    @Test func trimsOnTheFirstQuietTickAfterTheThresholdIsPassed() {
        var trimmer = HeapTrimmer(threshold: 1000)
        // 600 of 1000, then a quiet tick: nothing to give back yet. Then 2,000 more in one tick
        // (connections closing): their memory is freed after they are counted, so the trim waits
        // for the next quiet tick. Then the tally starts again.
        let ticks = [600, 0, 2000, 100, 0, 900].map { trimmer.tick(released: $0) }
        #expect(ticks == [false, false, false, true, false, false])
    }

    @Test func whatCountsAsQuietIsSetForTheTick() {
        // The worker ticks four times a second: quiet is under a sixteenth of the threshold.
        var trimmer = HeapTrimmer(threshold: 1600, quietBelow: 100)
        let ticks = [1600, 150, 100, 99].map { trimmer.tick(released: $0) }
        #expect(ticks == [false, false, false, true])
    }

    @Test func aWorkerThatKeepsReleasingIsTrimmedEveryEightThresholds() {
        var trimmer = HeapTrimmer(threshold: 1000)
        let trims = (0..<32).filter { _ in trimmer.tick(released: 1000) }
        #expect(trims == [7, 15, 23, 31])
    }

    @Test func trimAndResidentSizeWorkHere() throws {
        #expect(HeapTrimmer.trim(), "malloc_trim is a glibc function, found at run time")
        let resident = try #require(HeapTrimmer.residentBytes())
        #expect(resident > 1 << 20)
    }
}
