package omnistream.peer;

/** The keyed state kept on the heap (HashMapStateBackend), one POJO type per entity kind. */
public final class State {
    private State() {}

    /** Per member: counters, first/last seen, points earned. */
    public static class Member {
        public long events;
        public long scans;
        public long clicks;
        public long orders;
        public long visits;
        public long firstSeen;
        public long lastSeen;
        public long points;
        public long pointsEvents;

        public Member() {}
    }

    /** Per order: what placement said, so later statuses (which carry no lines) can act. */
    public static class Order {
        public String status;
        public String location;
        public String member;
        public String[] skus;
        public long[] qtys;
        public long[] prices;

        public Order() {}
    }

    /** Per SKU and location: on hand, reserved for open orders, safety stock. */
    public static class Stock {
        public long onHand;
        public long reserved;
        public long safety;

        public Stock() {}
    }

    /** Per item code: who scanned it first, when, how often. */
    public static class Code {
        public String firstMember;
        public long firstTs;
        public long scans;

        public Code() {}
    }
}
