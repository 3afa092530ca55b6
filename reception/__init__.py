"""The reception domain: kiosks, staff, appointments, visits, the workflow and host notification."""
