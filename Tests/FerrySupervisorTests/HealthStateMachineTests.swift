import Testing

@testable import FerrySupervisor

/// Issue 14, item 4: `fall` failures in a row take a server down, `rise` successes bring it back;
/// an interrupted streak starts over.
@Suite struct HealthStateMachineTests {
    @Test func fallThenRise() {
        var machine = HealthStateMachine()
        #expect(machine.isUp)
        #expect(machine.record(healthy: false, rise: 2, fall: 3) == .none)
        #expect(machine.record(healthy: false, rise: 2, fall: 3) == .none)
        #expect(machine.record(healthy: false, rise: 2, fall: 3) == .wentDown)
        #expect(!machine.isUp)
        #expect(machine.record(healthy: false, rise: 2, fall: 3) == .none)
        #expect(machine.record(healthy: true, rise: 2, fall: 3) == .none)
        #expect(machine.record(healthy: true, rise: 2, fall: 3) == .wentUp)
        #expect(machine.isUp)
    }

    @Test func anInterruptedStreakStartsOver() {
        var machine = HealthStateMachine()
        _ = machine.record(healthy: false, rise: 2, fall: 2)
        #expect(machine.record(healthy: true, rise: 2, fall: 2) == .none)
        #expect(machine.record(healthy: false, rise: 2, fall: 2) == .none)
        #expect(machine.isUp)
        #expect(machine.record(healthy: false, rise: 2, fall: 2) == .wentDown)
    }
}
